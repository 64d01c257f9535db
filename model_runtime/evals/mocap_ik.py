"""``python -m model_runtime eval mocap-ik FILE_OR_DIR... --json``: IK accuracy and speed on MoCap clips.

For every clip (ASF/AMC: the actor's ``.asf`` is found next to the ``.amc`` or
given with ``--asf``; BVH): parse, forward kinematics, retarget to SMPL-H
(cached; these rotations are the ground truth), compute the 24 body keypoints
of the retargeted body, then

* **IKNet**: the shipped ``IKSolver`` on the keypoints -> rotations, beta, alpha
  -> forward kinematics -> keypoints.  ``IKSolver`` ships BodyIKNet, the
  correction stage BodyCorrectionNet (when ``correction.pt`` exists) and the analytic
  limb refinement of :mod:`model_runtime.ik.refine`;
  ``iknet_without_refinement`` reports the networks alone (both stages) and
  ``bodyiknet_only`` BodyIKNet alone (the paper's single network);
* **baseline**: optimisation IK on the same frames (swing initialisation, then
  Adam on 6D rotations + beta + alpha for ``--baseline-iters`` iterations).

Reported: ``mpjpe_mm`` (keypoints after IK + FK vs the input keypoints, root
aligned), ``pa_mpjpe_mm`` (after a similarity Procrustes alignment),
``rotation_error_deg`` (geodesic angle to the retargeted rotations, mean over
the 22 body joints), ``mpjpe_mm_legs_missing`` (leg keypoints given conf 0,
error on the remaining ones), and ``ms_per_frame`` for batch 1 (both IK nets:
body + two hands, one frame; ``batch1`` wall time, ``batch1_cpu`` the thread's CPU time (medians
of 300 calls), ``batch1_cpu_p10`` its 10th percentile: the least disturbed calls on a shared CPU) and
batch 256 (per frame); ``openblas_core``: the kernels numpy's OpenBLAS runs
(:mod:`model_runtime.core.blas`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..core.errors import InputMissingError
from .common import mpjpe, procrustes_align


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, help=".amc / .bvh files or folders (searched recursively)")
    p.add_argument("--asf", type=Path, default=None, help="skeleton for .amc files (default: the actor's .asf next to each)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a short table + JSON)")
    p.add_argument("--body-model", default="builtin")
    p.add_argument("--weights-dir", type=Path, default=None)
    p.add_argument("--max-frames", type=int, default=4000, help="evaluate at most this many frames (evenly spaced)")
    p.add_argument("--baseline-iters", type=int, default=200)
    p.add_argument("--threads", type=int, default=2, help="torch and numpy BLAS threads")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="torch device (default auto: CUDA if available)")
    p.add_argument("--hands", action="store_true",
                   help="also report HandIKNet on the fitted hand-graph-cnn hands and on fresh anatomical-limit samples")


def hand_prior_metrics(ik, model, n_samples: int = 2000, seed: int = 123) -> dict:
    """HandIKNet MPJPE (mm) of the 21 keypoints after IK + FK on clean right hands:
    the 300 real hand-graph-cnn poses fitted with the SMPL-H hand (part of the training prior)
    and ``n_samples`` fresh anatomical-limit poses (a seed never used in training)."""
    import torch

    from ..ik.data import HandSampler, default_data_root, load_hand_prior
    from ..ik.hand_prior import random_rotations
    from ..models.keypoints import PartKinematics
    from ..core.rotations import rot6d_to_matrix

    kin = PartKinematics(model, "hand")
    real = load_hand_prior(kin, default_data_root())
    gen = torch.Generator().manual_seed(seed)

    def mpjpe_mm(R):
        _, kp = kin(R, torch.zeros(len(R), 16))
        both = torch.stack([kp, kp], 1)  # the left slot is ignored here
        out = ik.solve_hands_full(both, torch.ones(len(R), 2, 21))
        Rp = torch.cat([out["wrist_global"][:, 1:2], rot6d_to_matrix(out["rot6d"][:, 1])], 1)
        _, kp_pred = kin(Rp, torch.zeros(len(R), 16))
        return round(1000 * (kp_pred - kp).norm(dim=-1).mean().item(), 3)

    fresh = HandSampler(real, kin, p_real=0.0).sample(n_samples, gen).rot
    return {"hgc_fitted_mpjpe_mm": mpjpe_mm(torch.cat([random_rotations(len(real), gen)[:, None], real], 1)),
            "limit_samples_mpjpe_mm": mpjpe_mm(fresh), "hgc_frames": len(real), "limit_samples": n_samples}


def _collect(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".amc", ".bvh"))
        elif p.is_file():
            files.append(p)
        else:
            raise InputMissingError(f"{p}: no such file or folder")
    if not files:
        raise InputMissingError(f"{', '.join(map(str, paths))}: no .amc or .bvh files found")
    return files


def _metrics(kin, kp, R_gt, rot6d, betas, scale) -> dict:
    """IK result vs ground truth: MPJPE / PA-MPJPE (mm) of the 24 keypoints, rotation error (deg)."""
    from ..core.rotations import geodesic_angle, rot6d_to_matrix

    R = rot6d_to_matrix(rot6d)
    _, kp_pred = kin(R, betas, scale)
    err = (kp_pred - kp).norm(dim=-1)
    pred_np, gt_np = kp_pred.numpy().astype(np.float64), kp.numpy().astype(np.float64)
    out = {"mpjpe_mm": 1000 * err.mean().item(),
           "pa_mpjpe_mm": 1000 * float(mpjpe(procrustes_align(pred_np, gt_np), gt_np).mean()),
           "rotation_error_deg": math.degrees(geodesic_angle(R, R_gt).mean().item())}
    return out


def optimisation_ik(kin, kp: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Baseline IK: swing init from the keypoints' joints, then Adam on (6D, beta, alpha), batched.

    kp ``(B, 24, 3)`` pelvis-relative -> ``rot6d (B, 22, 6)``, ``betas (B, 16)``, ``scale (B,)``.
    """
    import torch

    from ..mocap.retarget import _initial_rotations
    from ..core.rotations import matrix_to_rot6d, rot6d_to_matrix
    from ..core.skeleton import BODY_JOINT_NAMES, BODY_KEYPOINT_NAMES

    B = kp.shape[0]
    # keypoint joints scattered into the 22-joint layout for the initialisation
    tgt = torch.zeros(B, 22, 3)
    w = torch.zeros(22)
    for i, n in enumerate(BODY_KEYPOINT_NAMES):
        if n in BODY_JOINT_NAMES:
            tgt[:, BODY_JOINT_NAMES.index(n)] = kp[:, i]
            w[BODY_JOINT_NAMES.index(n)] = 1.0
    with torch.no_grad():
        R0 = _initial_rotations(kin, torch.zeros(16), tgt, w)
    rot6d = matrix_to_rot6d(R0).clone().requires_grad_(True)
    betas = torch.zeros(B, 16, requires_grad=True)
    log_s = torch.zeros(B, requires_grad=True)
    opt = torch.optim.Adam([rot6d, betas, log_s], lr=0.02)
    eye = torch.eye(3)
    with torch.enable_grad():
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            R = rot6d_to_matrix(rot6d)
            _, k = kin(R, betas, log_s.exp())
            loss = ((k - kp) ** 2).sum(-1).mean() + 1e-4 * ((R[:, 1:] - eye) ** 2).sum((-1, -2)).mean() \
                + 1e-4 * (betas ** 2).mean()
            loss.backward()
            opt.step()
    return rot6d.detach(), betas.detach(), log_s.detach().exp()


def _time_ms(fn, repeats: int, warmup: int = 10, clock=time.perf_counter, q: tuple[float, ...] = (50,)):
    """Percentiles ``q`` (default: the median) in ms of ``fn`` over ``repeats`` calls after ``warmup``
    (one value for one percentile, else a tuple); ``clock``: wall time by default,
    ``time.thread_time`` for the CPU time of this thread (what a quiet machine's wall time would be:
    on a shared CPU the wall time also counts the waits for a core)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = clock()
        fn()
        ts.append(clock() - t)
    out = tuple(1000 * float(v) for v in np.percentile(ts, q))
    return out[0] if len(out) == 1 else out


def run(args) -> int:
    import torch

    from ..models.load import load_body_model
    from ..ik.data import BODY_FPS, load_clip
    from ..ik.inference import IKSolver
    from ..models.keypoints import PartKinematics
    from ..mocap.retarget import retarget_clips
    from ..core.rotations import rot6d_to_matrix

    torch.set_num_threads(args.threads)
    # numpy's BLAS too, as the capture pipeline does: IKSolver's small-batch path is numpy, and a
    # 2-thread OpenBLAS waits for a busy core (measured: 0.5 -> 2-6 ms per frame on the shared CPU)
    from ..core.blas import limit_numpy_blas_threads, openblas_core

    limit_numpy_blas_threads(args.threads)
    log = (lambda s: print(s, file=sys.stderr, flush=True))  # noqa: E731
    files = _collect(args.paths)
    model = load_body_model(args.body_model)
    kin = PartKinematics(model, "body")
    kin_hand = PartKinematics(model, "hand")
    clips = [load_clip(f, args.asf) for f in files]
    clips = [c.subsample(BODY_FPS[c.fmt]) for c in clips]
    res = retarget_clips(clips, kin, log=log)
    rot6d = torch.as_tensor(np.concatenate([r.rot6d for r in res]))
    betas = torch.as_tensor(np.concatenate([np.repeat(r.betas[None], len(r.rot6d), 0) for r in res]))
    scale = torch.as_tensor(np.concatenate([np.full(len(r.rot6d), r.scale, np.float32) for r in res]))
    fit_mm = float(np.concatenate([r.fit_mm for r in res]).mean())
    N = len(rot6d)
    if N > args.max_frames:
        sel = torch.linspace(0, N - 1, args.max_frames).round().long()
        rot6d, betas, scale = rot6d[sel], betas[sel], scale[sel]
    R_gt = rot6d_to_matrix(rot6d)
    with torch.no_grad():
        _, kp = kin(R_gt, betas, scale)
    F = len(kp)
    conf = torch.ones(F, 24)
    kwargs = {} if args.weights_dir is None else {"weights_dir": args.weights_dir}
    from ..core.options import resolve_device

    args.device = resolve_device(args.device)
    ik = IKSolver(args.device, **kwargs)
    ik_raw = IKSolver(args.device, refine=False, **kwargs)
    ik_first = IKSolver(args.device, refine=False, correct=False, **kwargs)

    out_ik = ik.solve_body(kp, conf)
    iknet = _metrics(kin, kp, R_gt, out_ik["rot6d"], out_ik["betas"], out_ik["scale"])
    o = ik_raw.solve_body(kp, conf)
    raw = _metrics(kin, kp, R_gt, o["rot6d"], o["betas"], o["scale"])
    o = ik_first.solve_body(kp, conf)
    first = _metrics(kin, kp, R_gt, o["rot6d"], o["betas"], o["scale"])
    from ..ik.data import BODY_DROP_GROUPS

    legs = BODY_DROP_GROUPS[0]
    conf_legs = conf.clone()
    conf_legs[:, legs] = 0
    o = ik.solve_body(kp, conf_legs)
    with torch.no_grad():
        _, kp_l = kin(rot6d_to_matrix(o["rot6d"]), o["betas"], o["scale"])
    keep = [i for i in range(24) if i not in legs]
    iknet["mpjpe_mm_legs_missing"] = 1000 * (kp_l[:, keep] - kp[:, keep]).norm(dim=-1).mean().item()

    # timing: both nets, numpy in/out as the pipeline calls them
    with torch.no_grad():
        _, hkp = kin_hand(torch.eye(3).expand(1, 16, 3, 3), torch.zeros(1, 16))
    hands1 = np.repeat(hkp.numpy()[:, None], 2, 1)
    hconf1 = np.ones((1, 2, 21), np.float32)
    kp_np, conf_np = kp.numpy(), conf.numpy()
    nb = min(256, F)
    hands_b, hconf_b = np.repeat(hands1, nb, 0), np.repeat(hconf1, nb, 0)

    def both(solver, i0: int, n: int, h, hc):
        solver.solve_body(kp_np[i0:i0 + n], conf_np[i0:i0 + n])
        solver.solve_hands(h, hc)

    for solver, res_ in ((ik, iknet), (ik_raw, raw), (ik_first, first)):
        ms1 = _time_ms(lambda: both(solver, 0, 1, hands1, hconf1), repeats=300)
        cpu1, cpu1_p10 = _time_ms(lambda: both(solver, 0, 1, hands1, hconf1), repeats=300, clock=time.thread_time,
                                  q=(50, 10))
        msb = _time_ms(lambda: both(solver, 0, nb, hands_b, hconf_b), repeats=20) / nb
        res_["ms_per_frame"] = {"batch1": round(ms1, 4), "batch1_cpu": round(cpu1, 4),
                                "batch1_cpu_p10": round(cpu1_p10, 4), "batch256": round(msb, 5)}

    # optimisation baseline on the same frames
    t = time.perf_counter()
    b_rot, b_betas, b_scale = optimisation_ik(kin, kp, args.baseline_iters)
    t_all = time.perf_counter() - t
    base = _metrics(kin, kp, R_gt, b_rot, b_betas, b_scale)
    t1 = _time_ms(lambda: optimisation_ik(kin, kp[:1], args.baseline_iters), repeats=3, warmup=1)
    base["ms_per_frame"] = {"batch1": round(t1, 2), "batch256": round(1000 * t_all / F, 4)}
    base["iters"] = args.baseline_iters

    report = {"files": len(files), "frames": F, "body_model": Path(model.source).name, "retarget_fit_mm": round(fit_mm, 2),
              **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in iknet.items()},
              "correction_stage": ik.correction_net is not None,
              "iknet_without_refinement": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in raw.items()},
              "bodyiknet_only": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in first.items()},
              "baseline_optimisation": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in base.items()},
              "threads": args.threads, "device": args.device, "openblas_core": openblas_core()}
    if args.hands:
        report["hands"] = hand_prior_metrics(ik, model)
    if not args.json:
        log(f"IKNet:    MPJPE {iknet['mpjpe_mm']:.1f} mm  PA {iknet['pa_mpjpe_mm']:.1f} mm  rot {iknet['rotation_error_deg']:.1f} deg  "
            f"{iknet['ms_per_frame']['batch1']:.3f} ms/frame (batch 1)")
        log(f"baseline: MPJPE {base['mpjpe_mm']:.1f} mm  PA {base['pa_mpjpe_mm']:.1f} mm  rot {base['rotation_error_deg']:.1f} deg  "
            f"{t1:.1f} ms/frame (batch 1)")
    print(json.dumps(report, indent=None if args.json else 2))
    return 0
