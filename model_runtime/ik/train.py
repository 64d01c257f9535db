"""Training of BodyIKNet / HandIKNet (command line: ``python -m model_runtime train iknet``,
:mod:`model_runtime.cli.train_iknet`).

Loss (paper Eq. 15), forward kinematics of the model layer inside the loss:

    L = l_a L_alpha + l_b L_beta + l_t L_theta + l_x L_chi + l_xb L_chi_bar

* ``L_theta``: squared Frobenius distance of the predicted rotation matrices
  (6D -> Gram-Schmidt) to the targets, mean over joints;
* ``L_chi``: keypoints after posing the model with the predicted theta (and,
  for the body, predicted beta/alpha) vs the noiseless keypoints;
* ``L_chi_bar``: keypoints at the reference (rest) pose with the predicted
  beta/alpha vs the true ones (body only: HandIKNet predicts no shape);
* ``L_alpha``, ``L_beta``: L2 on scale and shape (body only).

Positions enter in decimetres (body) or hand sizes (hand) so all terms are O(1).
``--part correction`` trains the optional second stage :class:`.networks.BodyCorrectionNet`
on top of the frozen shipped BodyIKNet (``<export-dir>/body.pt``; its hash is recorded
in ``correction.json`` and checked at load time), with the body loss and sampler.

Deterministic for a seed (one generator drives all sampling; deterministic
algorithms), resumable (``--resume`` continues from ``<run-dir>/checkpoint.pt``
and gives the same weights as a straight run), uses CUDA when present.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.rotations import rot6d_to_matrix
from .networks import BODY_CONFIG, CORRECTION_CONFIG, HAND_CONFIG, NetConfig, build, two_stage_body

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_VERSION = 1
DEFAULT_STEPS = {"body": 12000, "hand": 16000, "correction": 8000}
CONFIGS = {"body": BODY_CONFIG, "hand": HAND_CONFIG, "correction": CORRECTION_CONFIG}


@dataclass(frozen=True)
class LossWeights:
    alpha: float = 1.0
    beta: float = 0.1
    theta: float = 1.0
    chi: float = 1.0
    chi_bar: float = 1.0


# HandIKNet: no shape terms; keypoints (in hand sizes) weigh more than for the body
PART_LOSS_WEIGHTS = {"body": LossWeights(), "correction": LossWeights(),
                     "hand": LossWeights(alpha=0.0, beta=0.0, chi=4.0, chi_bar=0.0)}

def iknet_loss(part: str, out: dict, batch, kin, w: LossWeights | None = None) -> tuple[torch.Tensor, dict]:
    """Eq. 15.  ``out`` from :class:`IKNet`, ``batch`` a :class:`data.Batch` on the same device,
    ``kin`` the part's :class:`~model_runtime.models.keypoints.PartKinematics`.  Returns (loss, terms)."""
    w = w or PART_LOSS_WEIGHTS[part]
    R = rot6d_to_matrix(out["rot6d"])
    terms = {"theta": ((R - batch.rot) ** 2).sum((-1, -2)).mean()}
    if part in ("body", "correction"):
        _, kp = kin(R, out["betas"], out["scale"])
        B, J = R.shape[:2]
        _, kp_rest = kin(torch.eye(3, device=R.device).expand(B, J, 3, 3), out["betas"], out["scale"])
        unit = 0.1  # decimetres
        terms["chi"] = (((kp - batch.kp_clean) / unit) ** 2).sum(-1).mean()
        terms["chi_bar"] = (((kp_rest - batch.kp_rest) / unit) ** 2).sum(-1).mean()
        terms["beta"] = ((out["betas"] - batch.betas) ** 2).mean()
        terms["alpha"] = ((out["scale"] - batch.scale) ** 2).mean()
    else:
        _, kp = kin(R, batch.betas)
        terms["chi"] = (((kp - batch.kp_clean) / batch.size[:, None, None]) ** 2).sum(-1).mean()
    loss = sum(getattr(w, k) * v for k, v in terms.items())
    return loss, {k: float(v.detach()) for k, v in terms.items()}


class _WarmupCosine:
    """LR factor: linear warm-up over 5 % of the steps, then cosine decay to 0."""

    def __init__(self, total: int):
        self.total, self.warm = total, max(1, total // 20)

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warm) * 0.5 * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))


class Trainer:
    """Owns net, optimiser, schedule and the data generator; checkpoints all of them."""

    def __init__(self, part: str, sampler, kin_loss, steps: int, seed: int = 0, batch: int = 512,
                 lr: float = 1e-3, device: str | torch.device = "cpu", cfg: NetConfig | None = None,
                 first_stage=None):
        """``first_stage``: the frozen BodyIKNet under a ``correction`` net (required for that part)."""
        self.part, self.sampler, self.kin, self.total, self.batch = part, sampler, kin_loss, steps, batch
        self.device = torch.device(device)
        self.seed = seed
        if (part == "correction") != (first_stage is not None):
            raise ValueError("part 'correction' (and only it) trains on top of a frozen first_stage BodyIKNet")
        self.first_stage = first_stage.requires_grad_(False).eval() if first_stage is not None else None
        torch.manual_seed(seed)
        self.net = build(cfg or CONFIGS[part]).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _WarmupCosine(steps))
        self.gen = torch.Generator().manual_seed(seed)
        self.step = 0
        self.history: list[dict] = []

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "gen": self.gen.get_state(), "step": self.step, "seed": self.seed, "total": self.total,
                "part": self.part, "config": self.net.cfg.to_json(), "history": self.history}

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        st = torch.load(path, map_location=self.device, weights_only=False)
        if st["part"] != self.part or st["total"] != self.total:
            raise ValueError(f"{path}: checkpoint is for part={st['part']} steps={st['total']}, "
                             f"this run is part={self.part} steps={self.total}")
        self.net.load_state_dict(st["net"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.gen.set_state(st["gen"])
        self.step, self.history = st["step"], st["history"]

    def train(self, until: int | None = None, checkpoint: Path | None = None, every: int = 1000, log=None) -> None:
        until = self.total if until is None else min(until, self.total)
        self.net.train()
        t0, last = time.perf_counter(), {}
        while self.step < until:
            batch = self.sampler.sample(self.batch, self.gen).to(self.device)
            if self.first_stage is None:
                out = self.net(batch.kp, batch.conf, batch.frame)
            else:
                out = two_stage_body(self.first_stage, self.net, self.kin, batch.kp, batch.conf, batch.frame)
            loss, terms = iknet_loss(self.part, out, batch, self.kin)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            self.step += 1
            last = terms
            if self.step % 250 == 0 or self.step == until:
                self.history.append({"step": self.step, "loss": float(loss.detach()), **terms})
                if log:
                    el = time.perf_counter() - t0
                    log(f"step {self.step:6d}/{self.total}  loss {float(loss.detach()):.4f}  "
                        + "  ".join(f"{k} {v:.4f}" for k, v in terms.items()) + f"  ({el:.0f} s)")
            if checkpoint is not None and (self.step % every == 0 or self.step == until):
                self.save(checkpoint)
        self.last_terms = last


def export_weights(trainer: Trainer, out_dir: Path, meta: dict) -> tuple[Path, Path]:
    """Write ``<part>.pt`` (float32 state_dict) and ``<part>.json`` (config, version, provenance)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pt, js = out_dir / f"{trainer.part}.pt", out_dir / f"{trainer.part}.json"
    sd = {k: v.detach().cpu().float().contiguous() for k, v in trainer.net.state_dict().items()}
    torch.save(sd, pt)
    info = {"version": WEIGHTS_VERSION, "config": trainer.net.cfg.to_json(), "seed": trainer.seed,
            "steps": trainer.step, "batch": trainer.batch, "final_terms": trainer.history[-1] if trainer.history else {},
            **meta}
    js.write_text(json.dumps(info, indent=2) + "\n")
    return pt, js


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_net(part: str, weights_dir: Path = WEIGHTS_DIR, device="cpu"):
    """Load shipped weights; errors name the file."""
    from ..core.errors import ModelFileError

    pt, js = Path(weights_dir) / f"{part}.pt", Path(weights_dir) / f"{part}.json"
    for f in (pt, js):
        if not f.is_file():
            raise ModelFileError(str(f), None, f"IK weights missing; train with `python -m model_runtime train iknet --part {part}`")
    info = json.loads(js.read_text())
    if info.get("version") != WEIGHTS_VERSION:
        raise ModelFileError(str(js), "version", f"is {info.get('version')}, this runtime reads {WEIGHTS_VERSION}")
    net = build(info["config"]).to(device)
    try:
        net.load_state_dict(torch.load(pt, map_location=device, weights_only=True))
    except (RuntimeError, KeyError) as e:
        raise ModelFileError(str(pt), "state_dict", f"does not match {js.name} ({e})") from e
    if part == "correction" and info.get("first_stage_sha256") != file_sha256(Path(weights_dir) / "body.pt"):
        raise ModelFileError(str(js), "first_stage_sha256", "does not match body.pt (the correction stage was "
                             "trained on other BodyIKNet weights; retrain with `train iknet --part correction`)")
    net.eval()
    return net, info


def make_sampler(part: str, model, data_root: Path, log=None):
    """The real training sampler: retargeted MoCap (body) or the hand prior (hand)."""
    from ..models.keypoints import PartKinematics
    from .data import BodySampler, HandSampler, load_body_poses, load_hand_prior, mocap_clip_paths

    kin = PartKinematics(model, "body" if part == "correction" else part)
    if part in ("body", "correction"):
        poses = load_body_poses(kin, mocap_clip_paths(data_root, "train"), log=log)
        return BodySampler(poses, kin), {"train_frames": len(poses)}
    real = load_hand_prior(kin, data_root, log=log)
    return HandSampler(real, kin), {"real_hand_poses": len(real)}

