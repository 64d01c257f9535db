"""DetNet training loop: mixture of sources, Eq. 11 loss, resumable checkpoints, loss curves.

Device-agnostic: on CUDA the forward/backward runs under fp16 autocast with a gradient scaler;
on CPU in float32.  Everything the run needs to continue (weights, optimiser, scaler, step,
both random generators, the curve so far) is in ``<run_dir>/checkpoint.pt``; the loss per part
goes to ``<run_dir>/curves.csv`` (one row per ``log_every`` steps, means over those steps) and the
validation loss to ``<run_dir>/val.csv``.
"""
from __future__ import annotations

import contextlib

import csv
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .config import DetNetConfig
from .data import make_batch
from .losses import LossWeights, detnet_loss, gt_hand_boxes
from .network import DetNet
from .weights import save_weights

GRAD_CLIP = 1000.0
"""Gradient-norm guard against a diverging step only (a low clip slowed the keypoint-maps down)."""
PARTS = ("body_k", "body_d", "body_l", "hand_k", "hand_d", "hand_l", "heat_hand", "heat_face")
#: what a run may train (``Trainer(parts=...)``)
TRAIN_PARTS = ("all", "hands")


def jitter_boxes(boxes: torch.Tensor, rng: np.random.Generator, amount: float = 0.1) -> torch.Tensor:
    """``(N, 2, 3)`` (cx, cy, side) -> randomly shifted (+-amount x side) and scaled (0.9-1.15) boxes,
    so the Hand-PoseNets see crops as imprecise as the predicted ones."""
    n = boxes.shape[0]
    r = torch.from_numpy(rng.uniform(-1, 1, (n, 2, 3)).astype(np.float32)).to(boxes.device)
    side = boxes[..., 2] * (1.025 + 0.125 * r[..., 2])
    return torch.stack([boxes[..., 0] + amount * boxes[..., 2] * r[..., 0],
                        boxes[..., 1] + amount * boxes[..., 2] * r[..., 1], side], -1)


def cpu_training_guard(device) -> contextlib.AbstractContextManager:
    """Context for a training step's forward and backward: on the CPU, oneDNN (mkldnn) is off.

    oneDNN's convolution backward corrupted the heap on one of the machines here (an AMD EPYC VM,
    torch 2.13, one torch thread): a DetNet step aborted with "corrupted size vs. prev_size" or
    "double free" in 4 of 5 runs of ``tests/test_detnet.py``, none with oneDNN off (each layer alone
    did not; the whole net did).  torch's own CPU convolutions are used instead; CUDA is unaffected.
    """
    if torch.device(device).type == "cpu":
        return torch.backends.mkldnn.flags(enabled=False)
    return contextlib.nullcontext()


class Trainer:
    """Args:
        config: the architecture.
        sources: ``[(dataset, weight)]``; a dataset has ``len`` and ``[i] -> (image_rgb, labels)``.
        val: ``[(image_rgb, labels)]`` fixed validation samples (no augmentation), may be empty.
        steps: total optimisation steps (the cosine schedule ends there).
        parts: ``"all"``, or ``"hands"``: only the hand branch learns (body-feature conv, SuppFeatNet,
            the Hand-PoseNets); the body trunk, both body PoseNets and the heat-maps stay as they are, their
            BatchNorm statistics too, so the body keypoints and the hand and face boxes do not change.
    """

    def __init__(self, config: DetNetConfig, sources: Sequence, val: Sequence, steps: int, batch: int = 16,
                 lr: float = 1e-3, seed: int = 0, device: str = "cpu", weights: LossWeights = LossWeights(),
                 parts: str = "all"):
        torch.manual_seed(seed)
        self.config, self.sources, self.val = config, [s for s in sources if len(s[0])], list(val)
        if not self.sources:
            raise ValueError("no training data: every source is empty")
        if parts not in TRAIN_PARTS:
            raise ValueError(f"parts must be one of {', '.join(TRAIN_PARTS)}, got {parts!r}")
        self.steps, self.batch, self.lr, self.device, self.w, self.parts = steps, batch, lr, device, weights, parts
        self.net = DetNet(config).to(device)
        for m in self.frozen():
            m.requires_grad_(False)
        self.opt = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad], lr=lr)
        self.amp = str(device).startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.rng = np.random.default_rng(seed)
        self.step = 0
        self.best_val = math.inf

    def frozen(self) -> list[torch.nn.Module]:
        """The modules that do not learn (``parts``)."""
        n = self.net
        return [n.main, n.basic, n.ext, n.heat] if self.parts == "hands" else []

    def lr_at(self, step: int) -> float:
        """Cosine from ``lr`` to ``lr / 20`` over ``steps`` (after a 100-step warm-up)."""
        warm = min(1.0, (step + 1) / 100)
        t = min(1.0, step / max(1, self.steps))
        return warm * self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    def sample(self) -> list:
        """One batch of raw samples drawn from the source mixture."""
        p = np.array([w for _, w in self.sources], np.float64)
        which = self.rng.choice(len(self.sources), self.batch, p=p / p.sum())
        return [self.sources[k][0][int(self.rng.integers(len(self.sources[k][0])))] for k in which]

    def loss_on(self, image: torch.Tensor, labels: dict, jitter: bool) -> tuple[torch.Tensor, dict]:
        boxes = gt_hand_boxes(labels, self.config, self.w)
        if jitter:
            boxes = jitter_boxes(boxes, self.rng)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            out = self.net(image, labels["attention"], boxes)
        return detnet_loss(out, labels, self.config, self.w)

    def train_step(self) -> dict[str, float]:
        self.net.train()
        for m in self.frozen():
            m.eval()                                  # frozen BatchNorm statistics too
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        image, labels = make_batch(self.sample(), self.config.input_size, self.rng, True, self.device)
        with cpu_training_guard(self.device):
            total, parts = self.loss_on(image, labels, jitter=True)
            if not torch.isfinite(total):
                raise FloatingPointError(f"DetNet loss is {float(total)} at step {self.step}")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), GRAD_CLIP)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.step += 1
        return {"total": float(total.detach()), **{k: float(v) for k, v in parts.items()}}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss per part on the fixed validation samples (eval mode, boxes from labels)."""
        if not self.val:
            return {}
        self.net.eval()
        rng = np.random.default_rng(0)
        sums: dict[str, float] = {}
        chunks = [self.val[i:i + self.batch] for i in range(0, len(self.val), self.batch)]
        for chunk in chunks:
            image, labels = make_batch(chunk, self.config.input_size, rng, False, self.device)
            total, parts = self.loss_on(image, labels, jitter=False)
            for k, v in {"total": total, **parts}.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(chunk)
        return {k: v / len(self.val) for k, v in sums.items()}

    # -- checkpoints --
    def state(self, history: list) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "best_val": self.best_val, "val_size": len(self.val), "config": self.config.to_dict(),
                "parts": self.parts,
                "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        torch.save(self.state([]), tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        d = torch.load(path, map_location=self.device, weights_only=False)
        if d["config"] != self.config.to_dict():
            raise ValueError(f"{path}: checkpoint config {d['config']} differs from {self.config.to_dict()}")
        if d.get("parts", "all") != self.parts:
            raise ValueError(f"{path}: checkpoint trained parts {d.get('parts', 'all')!r}, this run {self.parts!r}")
        self.net.load_state_dict(d["net"])
        self.opt.load_state_dict(d["opt"])
        self.scaler.load_state_dict(d["scaler"])
        self.step, self.best_val = int(d["step"]), float(d["best_val"])
        if d.get("val_size") != len(self.val):     # another validation set (sources changed): not comparable
            self.best_val = math.inf
        self.rng.bit_generator.state = d["rng"]
        torch.set_rng_state(d["torch_rng"])

    def init_from(self, path: Path) -> None:
        """Network weights (only) from another run's checkpoint, or from a weights file (e.g. the
        shipped ``detnet_small.pt``: its float16 values, continued in float32), of the same
        configuration."""
        from .weights import FORMAT, load_weights

        d = torch.load(path, map_location=self.device, weights_only=False)
        if isinstance(d, dict) and d.get("format") == FORMAT:
            net, _ = load_weights(path)                   # validated: names the file and field
            config, state = net.config.to_dict(), net.state_dict()
        else:
            config, state = d["config"], d["net"]
        if config != self.config.to_dict():
            raise ValueError(f"{path}: config {config} differs from {self.config.to_dict()}")
        self.net.load_state_dict(state)

    def train(self, run_dir: Path, until: int, checkpoint_every: int = 200, log_every: int = 20,
              export: Path | None = None, meta: dict | None = None, max_wall_s: float | None = None,
              log: Callable[[str], None] = print) -> None:
        """Train to step ``until`` (or ``max_wall_s``), appending curves, checkpointing, and exporting
        the weights with the lowest validation loss to ``export``."""
        run_dir.mkdir(parents=True, exist_ok=True)
        curves, valf = run_dir / "curves.csv", run_dir / "val.csv"
        t0 = time.perf_counter()
        acc: list[dict] = []
        while self.step < until:
            acc.append(self.train_step())
            if self.step % log_every == 0:
                row = {"step": self.step, "lr": self.lr_at(self.step), "wall_s": round(time.perf_counter() - t0, 1),
                       **{k: float(np.mean([a[k] for a in acc])) for k in acc[0]}}
                _append_csv(curves, row)
                log(f"step {self.step}: " + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"))
                acc = []
            last = self.step >= until or (max_wall_s is not None and time.perf_counter() - t0 > max_wall_s)
            if self.step % checkpoint_every == 0 or last:
                v = self.validate()
                if v:
                    _append_csv(valf, {"step": self.step, **v})
                    log(f"val {self.step}: total={v['total']:.4g}")
                vt = v.get("total")
                if export is not None and (vt is None or vt < self.best_val):
                    self.best_val = self.best_val if vt is None else vt
                    save_weights(self.net, export, {**(meta or {}), "step": self.step, "val_loss": v.get("total")})
                    log(f"exported {export} (val {self.best_val:.4g})")
                self.save(run_dir / "checkpoint.pt")
            if last:
                break


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
