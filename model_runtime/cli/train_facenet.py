"""``python -m model_runtime train facenet``: cache face crops of the real material, train FaceNet, export it.

1. Cache (once, resumable per source; :mod:`model_runtime.face.facenet_data`): MediaPipe landmarks and the
   fit (tracker + closed-form appearance) of every face frame of the videos and images under ``--data``
   (default ``../shared/data/realdata``, research-licensed: the cache lives under ``--cache-dir``,
   default ``out/facenet/cache``, never in the repository).
2. Train (:mod:`model_runtime.face.train_facenet`; checkpoints in ``--run-dir``, ``--resume``), holding out
   ``--holdout`` sources (default: the SadTalker AOC clip) for the landmark check.
3. Export the weights (fp16) and their metadata to ``--export-dir`` (default the shipped
   ``model_runtime/face/weights``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_HOLDOUT = ("video_SadTalker_examples_ref_video_WDA_AlexandriaOcasioCortez_000",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, help="real material (default ../shared/data/realdata)")
    p.add_argument("--cache-dir", type=Path, default=Path("out/facenet/cache"))
    p.add_argument("--run-dir", type=Path, default=Path("out/facenet/run"))
    p.add_argument("--cache-only", action="store_true", help="build the cache and stop")
    p.add_argument("--max-frames", type=int, default=0, help="at most N frames per source in the cache (0 = all)")
    p.add_argument("--synth", type=int, default=0,
                   help="synthetic renders of the face model at any head pose to add to the cache "
                        "(face/facenet_synth.py; built once; default 0: none, as the shipped weights)")
    p.add_argument("--synth-share", type=float, default=None,
                   help="share of each batch drawn from the synthetic renders (default 0.3 with --synth, "
                        "else 0)")
    p.add_argument("--synth-pose-only", action="store_true",
                   help="the synthetic renders teach pose, identity, albedo and light, not expression "
                        "(TrainConfig.synth_expression off)")
    p.add_argument("--synth-min-yaw", type=float, default=0.0,
                   help="use only the synthetic renders turned at least this far (deg of yaw), where the real "
                        "faces are missing (default 0: all)")
    p.add_argument("--subset-cache", type=Path, default=None,
                   help="write about --subset-faces faces of --cache-dir, evenly spread over each source, to this "
                        "folder (a cache small enough to carry to a GPU machine) and exit")
    p.add_argument("--subset-faces", type=int, default=800,
                   help="--subset-cache: training faces kept (the --holdout sources keep at most 60 each)")
    p.add_argument("--holdout", nargs="*", default=list(DEFAULT_HOLDOUT),
                   help="cached sources kept out of training (landmark check)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default 6000)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from these weights (a facenet_<model>.pt, e.g. the shipped one) with a fresh "
                        "optimiser: fine-tuning")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--face-model", default="builtin", help="'builtin' or a Basel face model file")
    p.add_argument("--export-dir", type=Path, default=None,
                   help="where facenet_<model>.pt/.json go (default: the shipped model_runtime/face/weights)")
    p.add_argument("--expert", choices=("profile",), default=None,
                   help="export as the profile expert (facenet_<model>_profile.pt, used beside the main network "
                        "for turned faces; its yaw gate is the 95th-99th percentile of the real training faces' "
                        "|yaw|; train it with --synth)")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--export-only", action="store_true",
                   help="export <run-dir>/checkpoint.pt as it is (no training steps)")


def profile_gate(data: dict, names: list[str], held: list[int]) -> list[float]:
    """The profile expert's ``gate_yaw_deg``: the 95th and 99th percentile of |yaw| (teacher rotations) of the
    cache's real training faces (not synthetic, not held out), rounded to 0.1 deg: where real faces thin out."""
    import numpy as np

    from ..face.facenet import yaw_deg
    from ..face.facenet_synth import SYNTH_SOURCE

    drop = set(held) | ({names.index(SYNTH_SOURCE)} if SYNTH_SOURCE in names else set())
    real = ~np.isin(data["source"], sorted(drop))
    lo, hi = np.percentile(np.abs(yaw_deg(data["rotation"][real])), [95.0, 99.0])
    return [round(float(lo), 1), round(float(hi), 1)]


def run(args) -> int:
    import dataclasses

    import numpy as np
    import torch

    from ..core.blas import limit_numpy_blas_threads
    from ..core.options import resolve_device
    from ..face.correspondence import correspondence_for, model_signature
    from ..face.facenet import CROP_SCALE, FACENET_VERSION, WEIGHTS_DIR, save_weights, weights_path
    from ..face.facenet_data import build_cache, load_cache, select_rows
    from ..face.facenet_synth import SYNTH_SOURCE, build_synth_source
    from ..face.train_facenet import TrainConfig, train
    from ..models.face_model import FACE_ASSET_VERSION
    from ..models.load import load_face_model

    if args.init_from is not None and not args.init_from.is_file():
        from ..core.errors import InputMissingError

        raise InputMissingError(f"{args.init_from}: no such weights file (--init-from)")
    if args.subset_cache is not None:
        from ..face.facenet_data import subset_cache

        n = subset_cache(args.cache_dir, args.subset_cache, args.subset_faces, args.holdout)
        print(json.dumps({"faces": n, "dir": str(args.subset_cache)}))
        return 0
    torch.set_num_threads(args.threads)
    limit_numpy_blas_threads(args.threads)
    device = resolve_device(args.device)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    model = load_face_model(args.face_model)
    data_root = args.data or Path(__file__).resolve().parents[3] / "shared" / "data" / "realdata"
    t0 = time.perf_counter()
    summary = build_cache(data_root, args.cache_dir, model, args.max_frames, log=log)
    synth_path = args.cache_dir / f"{SYNTH_SOURCE}.npz"
    if args.synth > 0 and not synth_path.is_file():
        t1 = time.perf_counter()
        n = build_synth_source(model, correspondence_for(model), args.synth, synth_path, data_root, seed=args.seed,
                               log=log)
        log(f"{SYNTH_SOURCE}: {n} synthetic faces ({time.perf_counter() - t1:.0f} s)")
    if summary.get("face_model_signature") != model_signature(model):
        log(f"warning: {args.cache_dir} was built for another face model")
    if args.cache_only:
        return 0
    data = load_cache(args.cache_dir)
    names = [str(n) for n in data["source_names"]]
    if args.synth_min_yaw > 0 and SYNTH_SOURCE in names:
        rows = data["source"] == names.index(SYNTH_SOURCE)
        keep = np.ones(len(rows), bool)
        keep[rows] = np.abs(np.load(synth_path)["yaw_deg"]) >= args.synth_min_yaw
        data = select_rows(data, keep)
        log(f"{SYNTH_SOURCE}: {int(keep[rows].sum())} of {int(rows.sum())} renders at >= {args.synth_min_yaw:g} deg of yaw")
    held = [names.index(h) for h in args.holdout if h in names]
    val_idx = np.flatnonzero(np.isin(data["source"], held))
    share = args.synth_share if args.synth_share is not None else (0.3 if args.synth > 0 else None)
    cfg = TrainConfig(**{k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr),
                                            ("seed", args.seed), ("synth_share", share),
                                            ("synth_expression", False if args.synth_pose_only else None))
                         if v is not None})
    if args.export_only:
        ckpt = args.run_dir / "checkpoint.pt"
        if not ckpt.is_file():
            from ..core.errors import InputMissingError

            raise InputMissingError(f"{ckpt}: no checkpoint to export")
        cfg = dataclasses.replace(cfg, steps=int(torch.load(ckpt, map_location="cpu", weights_only=False)["step"]))
        args.resume = True
    log(f"FaceNet: {len(data['crop']) - len(val_idx)} training faces from {len(names) - len(held)} sources, "
        f"{len(val_idx)} held out; {cfg.steps} steps of {cfg.batch} on {device}")
    corr = correspondence_for(model)
    net, result = train(data, model, corr, cfg, args.run_dir, device=device, resume=args.resume, val_idx=val_idx,
                        log=log, init_from=args.init_from)
    if args.no_export:
        return 0
    faces = {n: int((data["source"] == i).sum()) for i, n in enumerate(names)}
    meta = {"version": FACENET_VERSION, "face_model": model.kind, "face_asset_version": FACE_ASSET_VERSION,
            "face_model_signature": model_signature(model), "sizes": model.sizes,
            "input_size": net.input_size, "crop_scale": CROP_SCALE, "width": net.trunk[0][0].out_channels,
            "hidden": net.head[1].out_features,
            "training": {"faces": faces, "held_out": [names[i] for i in held], "steps": result["steps"],
                         "seconds": result["seconds"], "device": device, "threads": args.threads,
                         "final": result["last"], "config": dataclasses.asdict(cfg),
                         "init_from": None if args.init_from is None else args.init_from.name,
                         "data": "face crops of the held-in videos/images of shared/data/realdata "
                                 "(MediaPipe landmarks + the fit as teacher)"
                                 + (f" + synthetic renders of the face model, {cfg.synth_share:g} of each batch"
                                    + (" (pose, identity, albedo and light only)" if not cfg.synth_expression else "")
                                    + (f", at >= {args.synth_min_yaw:g} deg of yaw" if args.synth_min_yaw > 0 else "")
                                    if cfg.synth_share > 0 and faces.get(SYNTH_SOURCE) else "")
                                 + "; AFLW2000 never used"},
            "wall_s": round(time.perf_counter() - t0, 1)}
    if args.expert == "profile":
        meta.update(expert="profile", gate_yaw_deg=profile_gate(data, names, held))
    out = weights_path(model, args.export_dir or WEIGHTS_DIR, expert=args.expert or "")
    save_weights(net, out, meta)
    log(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
