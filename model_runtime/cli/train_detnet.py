"""``python -m model_runtime train detnet``: train DetNet (:mod:`model_runtime.detectors.detnet`).

Data sources (each optional, mixed per batch by ``--mix``):

* ``teacher``: held-in real frames labelled by MediaPipe Holistic, cached once with
  ``--make-teacher`` under ``out/detnet/teacher`` (never in the repo);
* ``hands``: hand-graph-cnn crops 0-199 (real 3D; attention 0, zero-padded as in Fig. 6);
  200-299 are not trained on;
* ``synth``: shards of the synthetic engine (``python -m model_runtime synth --out DIR``, ``--synth-dir``);
* ``synth-live``: synthetic images generated on the fly on the training device (the GPU when lent);
* ``packed``: teacher frames packed with ``--pack-teacher FILE`` (square crops and labels in one ``.npz``,
  read without OpenCV: the GPU machine's real frames; ``--packed FILE``).

Resumes from ``<run-dir>/checkpoint.pt`` with ``--resume``; writes ``curves.csv``/``val.csv`` there
and exports the weights with the lowest validation loss (``--export``, float16).  ``--plot`` draws
the curves of a run into a PNG.  Runs on CPU (``--threads``) or CUDA (fp16 autocast).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REALDATA = Path(__file__).resolve().parents[3] / "shared/data/realdata"
HANDGRAPH = "hand-graph-cnn/data/real_world_testset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--make-teacher", action="store_true", help="label the held-in frames with MediaPipe and exit")
    p.add_argument("--teacher-every", type=int, default=2, help="--make-teacher: every N-th video frame")
    p.add_argument("--realdata", type=Path, default=REALDATA, help="realdata root (default ../shared/data/realdata)")
    p.add_argument("--teacher-dir", type=Path, default=Path("out/detnet/teacher"))
    p.add_argument("--mix", default="teacher:3,hands:1",
                   help="sources and weights, e.g. 'teacher:3,hands:1,synth:2' (teacher, hands, synth, synth-live)")
    p.add_argument("--synth-dir", type=Path, nargs="+", default=[Path("out/synth/detnet_train")],
                   help="shard folders for 'synth'")
    p.add_argument("--size", choices=("small", "base"), default="small", help="width preset")
    p.add_argument("--hand-features", choices=("both", "supp", "body"), default="both",
                   help="Table 6: both (DetNet), supp (DetNet-S), body (DetNet-B)")
    p.add_argument("--input-size", type=int, default=256, help="network input side, px")
    p.add_argument("--steps", type=int, default=4000, help="length of the learning-rate schedule")
    p.add_argument("--until", type=int, default=None, help="stop at this step (default --steps)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (checkpointed) after this wall time")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=None, help="default out/detnet/run_<size>_<hand-features>")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start a new run from the network weights of this checkpoint.pt (same config)")
    p.add_argument("--train-parts", choices=("all", "hands"), default="all",
                   help="hands: only the hand branch learns (body-feature conv, SuppFeatNet, Hand-PoseNets); the "
                        "body keypoints and the hand/face boxes stay those of the start weights")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--val-frames", type=int, default=48, help="held-out teacher frames for the validation loss")
    p.add_argument("--export", type=Path, default=None,
                   help="best weights (default <run-dir>/best.pt; the shipped file is "
                        "model_runtime/detectors/detnet/weights/detnet_small.pt)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--plot", type=Path, default=None, help="only draw <run-dir>/curves.csv into this PNG")
    p.add_argument("--synth-pose-bank", type=Path, default=None,
                   help="'synth-live' body poses from this file (--make-pose-bank) instead of the MoCap folders: "
                        "a GPU machine has neither the data nor OpenCV/scipy")
    p.add_argument("--make-pose-bank", type=Path, default=None,
                   help="write the synthetic engine's training pose bank (retargeted HDM05 + Bandai Namco, "
                        "float16 6D, ~13 MB) to this file and exit")
    p.add_argument("--pack-teacher", type=Path, default=None,
                   help="pack --pack-frames teacher frames (--teacher-dir) into this .npz for 'packed' and exit")
    p.add_argument("--pack-frames", type=int, default=400, help="--pack-teacher: frames, evenly spread")
    p.add_argument("--packed", type=Path, default=Path("out/detnet/teacher_packed.npz"), help="file of 'packed'")
    p.add_argument("--synth-live-val", type=int, default=32,
                   help="'synth-live' alone: this many fixed synthetic images (another seed) as the validation set")


def _spread(idx, n: int) -> list[int]:
    """At most ``n`` of the indices ``idx``, evenly spread over them."""
    idx = [int(i) for i in idx]
    return idx[:: max(1, len(idx) // n)][:n] if idx else []


def _held_sources(frames, n: int) -> list[int]:
    """Validation frames of a teacher cache: whole sources kept out (by name hash, so no near-duplicate
    video frames leak), at most ``n`` spread over them."""
    import zlib

    return _spread([i for i, s in enumerate(frames.sources) if zlib.crc32(str(s).split("#")[0].encode()) % 7 == 0], n)


def _sources(args, log):
    from ..detectors.detnet.data import HandOnlyImages, TeacherFrames

    mix = {}
    for part in args.mix.split(","):
        name, _, w = part.partition(":")
        if name not in ("teacher", "hands", "synth", "synth-live", "packed"):
            raise ValueError(f"--mix: unknown source '{name}' (teacher, hands, synth, synth-live, packed)")
        mix[name] = float(w or 1)
    train, val = [], []
    if "packed" in mix:
        from ..detectors.detnet.data import PackedTeacher

        packed = PackedTeacher(args.packed)
        held = _spread(np.flatnonzero(packed.held), args.val_frames)
        train.append((_Subset(packed, np.flatnonzero(~packed.held)), mix["packed"]))
        val += [packed[i] for i in held]
        log(f"packed: {int((~packed.held).sum())} training crops, {len(held)} validation crops from {args.packed}")
    if "teacher" in mix:
        frames = TeacherFrames(args.teacher_dir)
        held = _held_sources(frames, args.val_frames)
        keep = sorted(set(range(len(frames))) - set(held))
        train.append((_Subset(frames, keep), mix["teacher"]))
        val += [frames[i] for i in held]
        log(f"teacher: {len(keep)} training frames, {len(held)} validation frames")
    if "hands" in mix:
        hands = HandOnlyImages(args.realdata / HANDGRAPH)
        train.append((hands, mix["hands"]))
        val += [hands[i] for i in range(0, len(hands), 25)]
        log(f"hands: {len(hands)} hand-graph-cnn crops")
    if "synth" in mix:
        from ..detectors.detnet.synth_source import SynthShards

        shards = _Concat([SynthShards(d) for d in args.synth_dir])
        held = list(range(0, len(shards), 16))
        train.append((_Subset(shards, sorted(set(range(len(shards))) - set(held))), mix["synth"]))
        val += [shards[i] for i in held]
        log(f"synth: {len(shards)} images from {args.synth_dir} ({len(held)} for validation)")
    if "synth-live" in mix:
        from ..core.options import resolve_device
        from ..detectors.detnet.synth_source import SynthStream

        dev = resolve_device(args.device)
        bank = None if args.synth_pose_bank is None else str(args.synth_pose_bank)
        train.append((SynthStream(dev, seed=args.seed + 7, pose_bank=bank), mix["synth-live"]))
        log("synth-live: generated on the fly" + (f" (poses from {bank})" if bank else ""))
        if not val and args.synth_live_val > 0:      # nothing else to validate on: fixed images of another seed
            fixed = SynthStream(dev, seed=args.seed + 1_000_003, chunk=args.synth_live_val, pose_bank=bank)
            val += [fixed[i] for i in range(args.synth_live_val)]
            log(f"synth-live: {len(val)} fixed synthetic images for validation")
    return train, val


class _Concat:
    def __init__(self, parts):
        self.items = [(p, i) for p in parts for i in range(len(p))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        p, j = self.items[i]
        return p[j]


class _Subset:
    def __init__(self, data, idx):
        self.data, self.idx = data, list(idx)

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.data[self.idx[i]]


def plot_curves(run_dir: Path, png: Path) -> None:
    """Loss per part (training, log scale) and the validation total of a run into ``png``."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader((run_dir / "curves.csv").open()))
    val = list(csv.DictReader((run_dir / "val.csv").open())) if (run_dir / "val.csv").exists() else []
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    steps = [int(r["step"]) for r in rows]
    for k in rows[0]:
        if k not in ("step", "lr", "wall_s"):
            ax[0].plot(steps, [max(float(r[k]), 1e-4) for r in rows], label=k)
    ax[0].set_yscale("log"); ax[0].set_xlabel("step"); ax[0].set_title("training loss per part"); ax[0].legend(fontsize=7)
    if val:
        for k in ("total", "body_k", "hand_k", "hand_l", "heat_hand"):
            ax[1].plot([int(r["step"]) for r in val], [float(r[k]) for r in val], marker="o", label=k)
        ax[1].set_yscale("log"); ax[1].set_xlabel("step"); ax[1].set_title("validation loss"); ax[1].legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)


def run(args) -> int:
    import torch

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    run_dir = args.run_dir or Path("out/detnet") / f"run_{args.size}_{args.hand_features}"
    if args.plot is not None:
        plot_curves(run_dir, args.plot)
        log(f"wrote {args.plot}")
        return 0
    torch.set_num_threads(args.threads)
    if args.make_pose_bank is not None:
        from ..models.load import load_body_model
        from ..synth.config import SynthConfig
        from ..synth.poses import pose_bank, save_pose_bank

        rot = pose_bank(load_body_model("builtin"), SynthConfig().resolved_data_root(), "train", log=log)
        save_pose_bank(args.make_pose_bank, rot)
        print(json.dumps({"poses": int(len(rot)), "file": str(args.make_pose_bank)}))
        return 0
    if args.pack_teacher is not None:
        from ..detectors.detnet.data import TeacherFrames, pack_teacher

        frames = TeacherFrames(args.teacher_dir)
        held = set(_held_sources(frames, args.val_frames))
        every = np.linspace(0, len(frames) - 1, min(args.pack_frames, len(frames))).round().astype(int)
        picks = sorted(set(every.tolist()) | held)
        n = pack_teacher(frames, args.pack_teacher, picks, held, size=args.input_size)
        print(json.dumps({"packed_frames": n, "file": str(args.pack_teacher)}))
        return 0
    if args.make_teacher:
        from ..detectors.detnet.teacher import make_teacher_cache

        n = make_teacher_cache(args.realdata, args.teacher_dir, every=args.teacher_every, log=log)
        print(json.dumps({"teacher_frames": n, "dir": str(args.teacher_dir)}))
        return 0
    from ..core.options import resolve_device
    from ..detectors.detnet.config import DetNetConfig
    from ..detectors.detnet.train import Trainer

    device = resolve_device(args.device)
    config = DetNetConfig(size=args.size, hand_features=args.hand_features, input_size=args.input_size)
    train, val = _sources(args, log)
    trainer = Trainer(config, train, val, args.steps, batch=args.batch, lr=args.lr, seed=args.seed, device=device,
                      parts=args.train_parts)
    ckpt = run_dir / "checkpoint.pt"
    if args.resume and ckpt.is_file():
        trainer.load(ckpt)
        log(f"resumed from {ckpt} at step {trainer.step}")
    elif args.init_from is not None:
        trainer.init_from(args.init_from)
        log(f"network initialised from {args.init_from}")
    export = args.export or run_dir / "best.pt"
    meta = {"mix": args.mix, "train_parts": args.train_parts, "device": device, "threads": args.threads,
            "batch": args.batch,
            "teacher": "MediaPipe Holistic 0.10.21 on held-in realdata frames", "hands": "hand-graph-cnn 0-199"}
    t0 = time.perf_counter()
    trainer.train(run_dir, args.until or args.steps, args.checkpoint_every, args.log_every, export, meta,
                  None if args.max_minutes is None else args.max_minutes * 60, log)
    print(json.dumps({"step": trainer.step, "wall_s": round(time.perf_counter() - t0, 1),
                      "best_val": trainer.best_val, "export": str(export)}))
    return 0
