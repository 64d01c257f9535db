"""``python -m model_runtime train iknet --part body|hand|correction``: train BodyIKNet, HandIKNet
or the correction stage (:mod:`model_runtime.ik.train`; torch is imported when the command runs).

``--part correction`` trains the optional second stage on top of the frozen BodyIKNet in
``--export-dir`` (``body.pt``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PARTS = ("body", "hand", "correction")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--part", choices=PARTS, required=True,
                   help="correction: the correction stage on top of the shipped BodyIKNet (<export-dir>/body.pt)")
    p.add_argument("--steps", type=int, default=None,
                   help="total optimisation steps (default: body 12000, hand 16000, correction 8000)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints (default runs/iknet_<part>)")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--data", type=Path, default=None, help="data root (default ../shared/data)")
    p.add_argument("--body-model", default="builtin")
    p.add_argument("--export-dir", type=Path, default=None,
                   help="where <part>.pt/.json go (default: the shipped weights, model_runtime/ik/weights)")
    p.add_argument("--no-export", action="store_true")


def run(args) -> int:
    import torch

    from ..ik.data import default_data_root
    from ..ik.train import (
        DEFAULT_STEPS, WEIGHTS_DIR, Trainer, export_weights, file_sha256, load_net, make_sampler,
    )
    from ..mocap.retarget import model_signature
    from ..models.keypoints import PartKinematics
    from ..models.load import load_body_model

    export_dir = args.export_dir or WEIGHTS_DIR
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    model = load_body_model(args.body_model)
    data_root = args.data or default_data_root()
    sampler, data_meta = make_sampler(args.part, model, data_root, log=log)
    kin_loss = PartKinematics(model, "body" if args.part == "correction" else args.part, device=device)
    steps = args.steps or DEFAULT_STEPS[args.part]
    first, extra = None, {}
    if args.part == "correction":
        first, _ = load_net("body", Path(export_dir), device)
        extra = {"first_stage_sha256": file_sha256(Path(export_dir) / "body.pt")}
    trainer = Trainer(args.part, sampler, kin_loss, steps, seed=args.seed, batch=args.batch, lr=args.lr, device=device,
                      first_stage=first)
    run_dir = args.run_dir or Path("runs") / f"iknet_{args.part}"
    ckpt = run_dir / "checkpoint.pt"
    if args.resume and ckpt.is_file():
        trainer.load(ckpt)
        log(f"resumed from {ckpt} at step {trainer.step}")
    log(f"training {args.part} on {device} for {steps} steps (data ready in {time.perf_counter() - t0:.0f} s)")
    trainer.train(checkpoint=ckpt, every=args.checkpoint_every, log=log)
    wall = time.perf_counter() - t0
    if not args.no_export:
        meta = {"body_model": Path(model.source).name, "body_model_signature": model_signature(PartKinematics(model, "body")),
                "wall_s": round(wall, 1), "device": device, "threads": args.threads, **data_meta, **extra}
        pt, js = export_weights(trainer, Path(export_dir), meta)
        log(f"wrote {pt} and {js}")
    print(json.dumps({"part": args.part, "steps": trainer.step, "wall_s": round(wall, 1),
                      "final": trainer.history[-1] if trainer.history else {}}))
    return 0
