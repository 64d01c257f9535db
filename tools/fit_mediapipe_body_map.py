"""Calibrate MediaPipe pose landmarks -> SMPL-H body keypoints on rendered ground truth.

Rebuilds ``model_runtime/assets/mediapipe_body_map.npz`` (loaded by
:mod:`model_runtime.detectors.mediapipe`) in three steps::

    nice .venv/bin/python tools/fit_mediapipe_body_map.py render   # ~1000 frames, ~15 min on 2 cores
    nice .venv/bin/python tools/fit_mediapipe_body_map.py detect   # MediaPipe on every frame, ~2 min
    .venv/bin/python tools/fit_mediapipe_body_map.py fit           # least squares, seconds
    nice .venv/bin/python tools/fit_mediapipe_body_map.py holdout  # held-out dg clips, ~3 min
    nice .venv/bin/python tools/fit_mediapipe_body_map.py evaluate # both maps through the capture, ~5 min

``render`` uses ``tools/make_sample_clip.py`` on HDM05 clips of the TRAINING
actors only (bd, bk, mm; never dg, the held-out actor) and a few Bandai Namco
clips, each with a random yaw,
camera distance and body shape, into the git-ignored ``runs/calib/``.
``holdout`` renders a few dg clips to ``runs/holdout/`` for the evaluation in
``docs/evaluation.md``.  Nothing derived from ``../shared`` is committed except
the fitted weights.

The model (see :func:`fit` and ``docs/evaluation.md``): every body keypoint is
an affine combination (weights sum to 1) of the 33 pose landmarks plus an
offset expressed in a body-local frame built from the hips and shoulders,
``k = W @ L + B @ o``; the same ``W`` is used in 2D (pixels) and 3D (world
landmarks, metres), the offset only in 3D.  ``W`` is fitted by ridge regression
towards the hand-set matrix, restricted to a few landmarks per keypoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

HDM05 = REPO.parent / "shared/data/mocap/hdm05"
BANDAI = REPO.parent / "shared/data/mocap/bandai_namco/dataset/Bandai-Namco-Research-Motiondataset-1/data"
BANDAI_CLIPS = ("bow_tired_001", "byebye_normal_001", "call_normal_001", "guide_active_001", "kick_normal_001",
                "punch_normal_001", "respond_normal_001", "slash_normal_001")
CALIB_DIR = REPO / "runs/calib"
HOLDOUT_DIR = REPO / "runs/holdout"
TRAIN_ACTORS = ("bd", "bk", "mm")
CALIB_FPS, CALIB_MAX_FRAMES, CALIB_EVERY = 15.0, 40, 4
ASSET = REPO / "model_runtime/assets/mediapipe_body_map.npz"
RIDGE, RIDGE3 = 0.1, 100.0
"""Prior strength towards the hand-set weights, 2D and 3D (multiply RIDGE_2D / RIDGE_3D); chosen by
``crossval``: 2D is best at 0.01-0.1; 3D is flat from 0.01 to 300, so a strong prior that does not
hurt keeps the 3D weights near the hand-set ones (interpretable, no trading of weights against offsets)."""
RIDGE_2D, RIDGE_3D = 1e2, 1e-4
"""Per-row ridge scales: a weight change of 0.1 on landmarks ~50 px (2D) or ~0.1 m (3D)
apart moves a keypoint by ~5 px / ~1 cm, i.e. a squared residual ~25 px^2 / ~1e-4 m^2."""
SUPPORT: dict[str, tuple[str, ...]] = {
    # body keypoint -> pose landmarks it may combine (beyond these, weights are 0)
    "pelvis": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "left_hip": ("left_hip", "right_hip", "left_shoulder", "right_shoulder", "left_knee"),
    "right_hip": ("right_hip", "left_hip", "right_shoulder", "left_shoulder", "right_knee"),
    "left_knee": ("left_knee", "left_hip", "left_ankle"),
    "right_knee": ("right_knee", "right_hip", "right_ankle"),
    "left_ankle": ("left_ankle", "left_knee", "left_heel", "left_foot_index"),
    "right_ankle": ("right_ankle", "right_knee", "right_heel", "right_foot_index"),
    "neck": ("left_shoulder", "right_shoulder", "left_ear", "right_ear", "nose"),
    "head": ("left_ear", "right_ear", "nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder"),
    "left_shoulder": ("left_shoulder", "right_shoulder", "left_elbow", "left_hip"),
    "right_shoulder": ("right_shoulder", "left_shoulder", "right_elbow", "right_hip"),
    "left_elbow": ("left_elbow", "left_shoulder", "left_wrist"),
    "right_elbow": ("right_elbow", "right_shoulder", "right_wrist"),
    "left_wrist": ("left_wrist", "left_elbow", "left_index", "left_pinky", "left_thumb"),
    "right_wrist": ("right_wrist", "right_elbow", "right_index", "right_pinky", "right_thumb"),
    "nose": ("nose", "left_eye_inner", "right_eye_inner", "mouth_left", "mouth_right"),
    "left_eye": ("left_eye", "left_eye_inner", "left_eye_outer"),
    "right_eye": ("right_eye", "right_eye_inner", "right_eye_outer"),
    "left_ear": ("left_ear", "left_eye_outer"),
    "right_ear": ("right_ear", "right_eye_outer"),
    "left_heel": ("left_heel", "left_ankle", "left_foot_index"),
    "right_heel": ("right_heel", "right_ankle", "right_foot_index"),
    "left_big_toe": ("left_foot_index", "left_heel", "left_ankle"),
    "right_big_toe": ("right_foot_index", "right_heel", "right_ankle"),
}
HOLDOUT_CLIPS = ("HDM_dg_grabHighR_011_120", "HDM_dg_jogLeftCircle4StepsRstart_009_120",
                 "HDM_dg_elbowToKnee1RepsLelbowStart_013_120")


def calibration_clips() -> list[Path]:
    """Every CALIB_EVERY-th HDM05 clip of the training actors (no lying-down clips: no pose found),
    then a few Bandai Namco clips (other performers, other motions)."""
    clips = sorted(p for p in HDM05.rglob("*.amc")
                   if p.name.split("_")[1] in TRAIN_ACTORS and "lieDown" not in p.name)
    return clips[::CALIB_EVERY] + [BANDAI / f"dataset-1_{n}.bvh" for n in BANDAI_CLIPS]


def _render_one(amc: Path, out: Path, seed: int, fps: float, max_frames: int | None) -> None:
    import make_sample_clip as msc

    name = amc.stem
    if (out / f"{name}.mp4").exists() and (out / f"{name}_gt.npz").exists():
        return
    argv = ["--amc", str(amc), "--out", str(out), "--name", name, "--fps", str(fps),
            "--random-view", "--seed", str(seed)]
    if max_frames:
        argv += ["--max-frames", str(max_frames)]
    msc.main(argv)


def cmd_render(args) -> int:
    clips = calibration_clips()
    assert not any("_dg_" in c.name for c in clips), "held-out actor dg in the calibration set"
    for i, amc in enumerate(clips):
        print(f"[{i + 1}/{len(clips)}] {amc.name}", flush=True)
        _render_one(amc, CALIB_DIR, seed=i, fps=CALIB_FPS, max_frames=CALIB_MAX_FRAMES)
    return 0


def cmd_holdout(args) -> int:
    for i, stem in enumerate(HOLDOUT_CLIPS):
        amc = next(HDM05.rglob(f"{stem}.amc"))
        _render_one(amc, HOLDOUT_DIR, seed=1000 + i, fps=30.0, max_frames=60)
    return 0


def gt_keypoints(gt_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth body keypoints of a GT capture.

    Returns:
        ``(T, 24, 3)`` camera-frame metres and ``(T, 24, 2)`` pixels (BODY_KEYPOINT_NAMES order).
    """
    from model_runtime.models.body_model import load_builtin_body
    from model_runtime.core.capture_file import load_capture
    from model_runtime.models.keypoints import body_keypoints, keypoint_vertex_ids
    from model_runtime.core.rotations import rot6d_to_matrix

    body, cap = load_builtin_body(), load_capture(gt_path)
    T = cap.num_frames
    rot = rot6d_to_matrix(cap["pose_6d"].astype(np.float64))
    betas = np.broadcast_to(cap["betas"].astype(np.float64), (T, cap["betas"].shape[-1]))
    verts, joints, _ = body.forward(betas, rot, transl=cap["transl"].astype(np.float64),
                                    scale=np.full(T, float(cap["scale"])))
    kp3 = body_keypoints(joints, verts, keypoint_vertex_ids(body))
    uvw = kp3 @ np.asarray(cap["camera_K"], np.float64).T
    return kp3, uvw[..., :2] / uvw[..., 2:]


def detect_clip(video: Path, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe Holistic (video mode, as in the capture pipeline) on every frame.

    Returns:
        ``found (T,)`` bool, ``pose_px (T, 33, 4)`` (x, y px, z, visibility) and
        ``world (T, 33, 3)`` metres (MediaPipe world landmarks); NaN where not found.
    """
    import cv2

    from model_runtime.detectors.mediapipe import BodyMap, MediaPipeDetector

    cap = cv2.VideoCapture(str(video))
    found, px, world = [], [], []
    # raw landmarks only: the map itself does not matter here (hand-set: works without the asset)
    with MediaPipeDetector(refine_face_landmarks=False, body_map=BodyMap.handset()) as det:
        t = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            d = det.detect(img, timestamp_ms=int(round(t * 1000.0 / fps)))
            found.append(d.person)
            px.append(d.extras.get("pose_landmarks_px", np.full((33, 4), np.nan, np.float32)))
            world.append(d.extras.get("pose_world_landmarks", np.full((33, 3), np.nan, np.float32)))
            t += 1
    cap.release()
    return np.array(found), np.stack(px), np.stack(world)


def cmd_detect(args) -> int:
    """runs/calib/*.mp4 -> runs/calib/landmarks.npz (landmarks + GT keypoints, per frame)."""
    from model_runtime.core.capture_file import load_capture

    out = {k: [] for k in ("clip", "pose_px", "world", "gt_3d", "gt_2d")}
    videos = sorted(CALIB_DIR.glob("*.mp4"))
    for i, video in enumerate(videos):
        gt_path = video.with_name(video.stem + "_gt.npz")
        fps = float(load_capture(gt_path)["fps"])
        found, px, world = detect_clip(video, fps)
        kp3, kp2 = gt_keypoints(gt_path)
        T = min(len(found), len(kp3))
        keep = found[:T]
        print(f"[{i + 1}/{len(videos)}] {video.stem}: {keep.sum()}/{T} frames with a person", flush=True)
        out["clip"] += [i] * int(keep.sum())
        out["pose_px"].append(px[:T][keep])
        out["world"].append(world[:T][keep])
        out["gt_3d"].append(kp3[:T][keep])
        out["gt_2d"].append(kp2[:T][keep])
    np.savez(CALIB_DIR / "landmarks.npz", clip=np.array(out["clip"]), names=np.array([v.stem for v in videos]),
             **{k: np.concatenate(v).astype(np.float32) for k, v in out.items() if k != "clip"})
    print(f"wrote {CALIB_DIR / 'landmarks.npz'} ({len(out['clip'])} frames)")
    return 0


def _fit_affine(X: np.ndarray, y: np.ndarray, w0: np.ndarray, ridge: float, extra: np.ndarray | None = None,
                iters: int = 3) -> tuple[np.ndarray, np.ndarray, float]:
    """Weights summing to 1 (+ optional free offset) by robust ridge least squares.

    Minimises ``sum_f r_f^2 + ridge * N * (|w - w0|^2 + |o|^2)`` with
    ``r_f = sum_i w_i X[f, i] + extra[f] @ o - y[f]``, ``sum_i w_i = 1``; frames
    whose residual exceeds 3x the median are dropped between iterations
    (MediaPipe left/right swaps, missed limbs).

    Args:
        X: ``(N, S)`` landmark coordinates (one row per frame and axis).
        y: ``(N,)`` target coordinates.
        w0: ``(S,)`` prior weights (sum 1).
        extra: ``(N, 3)`` offset design rows or None.
    Returns:
        ``w (S,)``, ``o (3,)`` (zeros without ``extra``), median absolute residual.
    """
    S = X.shape[1]
    # eliminate the constraint: w = w0 + Z @ u with the columns of Z spanning {d: sum d = 0}
    Z = np.linalg.svd(np.ones((1, S)))[2][1:].T                                  # (S, S-1)
    A = X @ Z if extra is None else np.concatenate([X @ Z, extra], 1)
    b = y - X @ w0
    keep = np.ones(len(y), bool)
    for _ in range(iters):
        n = keep.sum()
        u = np.linalg.solve(A[keep].T @ A[keep] + ridge * n * np.eye(A.shape[1]), A[keep].T @ b[keep])
        r = np.abs(A @ u - b)
        keep = r <= 3.0 * np.median(r) + 1e-9
    w = w0 + Z @ u[:S - 1]
    o = np.zeros(3) if extra is None else u[S - 1:]
    return w, o, float(np.median(r))


def fit_map(px: np.ndarray, world: np.ndarray, gt2: np.ndarray, gt3: np.ndarray, ridge: float = RIDGE,
            ridge_3d: float = RIDGE3):
    """Fit a :class:`BodyMap` (see module docstring).

    Args:
        px: ``(F, 33, >=2)`` pose landmarks, pixels.
        world: ``(F, 33, 3)`` pose world landmarks, metres.
        gt2: ``(F, 24, 2)`` ground-truth keypoints, pixels.
        gt3: ``(F, 24, 3)`` ground-truth keypoints, camera metres (any origin).
        ridge, ridge_3d: prior strength towards the hand-set weights, 2D and 3D.
    """
    from model_runtime.detectors.mediapipe import BODY_FROM_POSE, POSE_LANDMARK_NAMES, BodyMap, body_local_frames
    from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES

    pel = BODY_KEYPOINT_NAMES.index("pelvis")
    # 3D targets: root-relative GT, moved to MediaPipe's world origin (mid-hip) by the hand-set pelvis
    # (the detector re-centres on the mapped pelvis, so only relative positions matter)
    hand3 = np.einsum("kl,fld->fkd", BODY_FROM_POSE, world)
    tgt3 = gt3 - gt3[:, pel:pel + 1] + hand3[:, pel:pel + 1]
    frames = body_local_frames(world).reshape(-1, 3)                             # (F*3, 3) rows = (frame, axis)
    W2 = np.zeros(BODY_FROM_POSE.shape)
    W3 = np.zeros(BODY_FROM_POSE.shape)
    O3 = np.zeros((len(BODY_KEYPOINT_NAMES), 3))
    idx = {n: i for i, n in enumerate(POSE_LANDMARK_NAMES)}
    for k, name in enumerate(BODY_KEYPOINT_NAMES):
        sup = np.array([idx[n] for n in SUPPORT[name]])
        w0 = BODY_FROM_POSE[k, sup].astype(np.float64)
        X2 = px[:, sup, :2].transpose(0, 2, 1).reshape(-1, len(sup))              # (F*2, S)
        W2[k, sup], _, _ = _fit_affine(X2, gt2[:, k].reshape(-1), w0, ridge * RIDGE_2D)
        X3 = world[:, sup].transpose(0, 2, 1).reshape(-1, len(sup))              # (F*3, S)
        W3[k, sup], O3[k], _ = _fit_affine(X3, tgt3[:, k].reshape(-1), w0, ridge_3d * RIDGE_3D, extra=frames)
    return BodyMap(W2.astype(np.float32), W3.astype(np.float32), O3.astype(np.float32))


def map_errors(m, px, world, gt2, gt3) -> tuple[np.ndarray, np.ndarray]:
    """``(F, 24)`` 2D error px and ``(F, 24)`` root-relative 3D error mm of map ``m``."""
    from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES

    pel = BODY_KEYPOINT_NAMES.index("pelvis")
    e2 = np.linalg.norm(m.apply_2d(px) - gt2, axis=-1)
    e3 = np.linalg.norm(m.apply_3d(world) - (gt3 - gt3[:, pel:pel + 1]), axis=-1) * 1000.0
    return e2, e3


def _load_landmarks():
    d = np.load(CALIB_DIR / "landmarks.npz")
    arrays = [d[k].astype(np.float64) for k in ("pose_px", "world", "gt_2d", "gt_3d")]
    return d["clip"], [str(n) for n in d["names"]], arrays


def cmd_crossval(args) -> int:
    """2-fold cross-validation over clips (even / odd clip index) for a few ridge strengths."""
    from model_runtime.detectors.mediapipe import BodyMap

    clip, _, arrays = _load_landmarks()
    folds = [(clip % 2 == 0), (clip % 2 == 1)]
    print("ridge (2D = 3D)  2D median px   3D mean mm   (held-out folds)")
    e2, e3 = zip(*[map_errors(BodyMap.handset(), *[a[f] for a in arrays]) for f in folds])
    print(f"{'hand-set':>8}  {np.median(np.concatenate(e2)):8.2f}  {np.mean(np.concatenate(e3)):10.1f}")
    for ridge in args.ridges:
        e2, e3 = zip(*[map_errors(fit_map(*[a[~f] for a in arrays], ridge, ridge), *[a[f] for a in arrays])
                       for f in folds])
        print(f"{ridge:8.3g}  {np.median(np.concatenate(e2)):8.2f}  {np.mean(np.concatenate(e3)):10.1f}")
    return 0


def cmd_fit(args) -> int:
    import datetime
    import subprocess

    from model_runtime.detectors.mediapipe import BODY_MAP_VERSION, POSE_LANDMARK_NAMES, BodyMap
    from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES

    _, names, arrays = _load_landmarks()
    fitted = fit_map(*arrays, args.ridge, args.ridge_3d)
    # training-set report (the held-out evaluation is `evaluate`, see docs/evaluation.md)
    report = {}
    for label, m in (("hand-set", BodyMap.handset()), ("fitted", fitted)):
        e2, e3 = map_errors(m, *arrays)
        report[label] = (np.median(e2, 0), e3.mean(0))
        print(f"{label:>9}: 2D median {np.median(e2):5.1f} px, 3D root-relative mean {e3.mean():6.1f} mm")
    print(f"{'keypoint':>15}  2D median px (hand-set -> fitted)  3D mean mm (hand-set -> fitted)")
    for k, name in enumerate(BODY_KEYPOINT_NAMES):
        (a2, a3), (b2, b3) = report["hand-set"], report["fitted"]
        print(f"{name:>15}  {a2[k]:6.1f} -> {b2[k]:6.1f}              {a3[k]:6.1f} -> {b3[k]:6.1f}")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    F = len(arrays[0])
    np.savez(args.out, version=np.int32(BODY_MAP_VERSION), keypoint_names=np.array(BODY_KEYPOINT_NAMES),
             landmark_names=np.array(POSE_LANDMARK_NAMES), weights_2d=fitted.weights_2d,
             weights_3d=fitted.weights_3d, offsets_3d=fitted.offsets_3d,
             provenance=np.array(
                 f"tools/fit_mediapipe_body_map.py fit --ridge {args.ridge} --ridge-3d {args.ridge_3d} on {F} frames of {len(names)} "
                 f"rendered MoCap clips ({sum(n.startswith('HDM_') for n in names)} HDM05 of training actors "
                 f"{'/'.join(TRAIN_ACTORS)}, held-out dg excluded; {sum(not n.startswith('HDM_') for n in names)} "
                 f"Bandai Namco dataset 1), random yaw/distance/betas, "
                 f"MediaPipe Holistic 0.10.21 model_complexity=1 video mode; repo commit {commit}; "
                 f"{datetime.date.today().isoformat()}"),
             clips=np.array(names))
    print(f"wrote {args.out}")
    return 0


def _capture(video: Path, out: Path, body_map) -> None:
    """The real capture pipeline (``capture VIDEO -o OUT --no-face`` defaults) with a given body map."""
    from model_runtime.core.options import from_args as options_from_args
    from model_runtime.cli import capture
    from model_runtime.detectors.mediapipe import MediaPipeDetector
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.capture.sources import open_source

    p = argparse.ArgumentParser()
    capture.add_arguments(p)
    options = options_from_args(p.parse_args([str(video), "-o", str(out), "--no-face", "--quiet", "--overwrite"]))
    source = open_source(str(video), start=options.start, end=options.end, fps=options.folder_fps)
    try:
        pipe = build_pipeline(options, detector=MediaPipeDetector(body_map=body_map))
        try:
            pipe.run(source, out)
        finally:
            pipe.detector.close()
    finally:
        source.close()


def cmd_evaluate(args) -> int:
    """Held-out dg clips (shipped sample + runs/holdout/): capture with each map, score against GT."""
    import json

    from model_runtime.evals.capture_gt import score
    from model_runtime.detectors.mediapipe import BodyMap

    clips = [(REPO / "samples/demo_clip.mp4", REPO / "samples/demo_clip_gt.npz")]
    clips += [(v, v.with_name(v.stem + "_gt.npz")) for v in sorted(HOLDOUT_DIR.glob("*.mp4"))]
    out_dir = REPO / "runs/eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for label, body_map in (("hand-set", BodyMap.handset()), ("calibrated", BodyMap.load(args.map))):
        for video, gt in clips:
            cap = out_dir / f"{video.stem}_{label}.npz"
            if label == "calibrated" or not cap.exists():   # the hand-set map never changes: reuse
                _capture(video, cap, body_map)
            results[f"{video.stem} {label}"] = r = score(cap, gt)
            print(f"{video.stem:>45} {label:>10}: " + ", ".join(f"{k} {v:.3g}" for k, v in r.items()), flush=True)
    keys = ("mpjpe_mm", "pa_mpjpe_mm", "root_error_mm", "rotation_error_deg")
    for label in ("hand-set", "calibrated"):
        rows = [v for k, v in results.items() if k.endswith(" " + label)]
        w = np.array([r["frames"] for r in rows], float)
        results[f"ALL {label}"] = {k: float((np.array([r[k] for r in rows]) * w).sum() / w.sum()) for k in keys}
    (out_dir / "body_map_holdout.json").write_text(json.dumps(results, indent=1))
    print("| clip | map | MPJPE mm | PA-MPJPE mm | root mm (median) | rotation deg |\n|---|---|---|---|---|---|")
    for k, r in results.items():
        clip, label = k.rsplit(" ", 1)
        print(f"| {clip} | {label} | " + " | ".join(f"{r[m]:.1f}" for m in keys) + " |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("render", help="render the calibration clips to runs/calib/")
    sub.add_parser("holdout", help="render held-out dg clips to runs/holdout/")
    sub.add_parser("detect", help="MediaPipe + ground-truth keypoints of runs/calib/ -> runs/calib/landmarks.npz")
    f = sub.add_parser("fit", help="fit the mapping and write the asset")
    f.add_argument("--ridge", type=float, default=RIDGE, help=f"ridge weight towards the hand-set map (default {RIDGE})")
    f.add_argument("--ridge-3d", type=float, default=RIDGE3, help=f"same for the 3D map (default {RIDGE3})")
    f.add_argument("--out", type=Path, default=ASSET)
    c = sub.add_parser("crossval", help="2-fold (by clip) cross-validation of the ridge strength")
    c.add_argument("--ridges", type=float, nargs="+", default=[0.01, 0.1, 1.0, 10.0, 100.0, 1000.0])
    e = sub.add_parser("evaluate", help="held-out dg clips: hand-set vs calibrated map through the whole capture")
    e.add_argument("--map", type=Path, default=ASSET, help="calibrated map to evaluate (default: the asset)")
    args = p.parse_args(argv)
    return {"render": cmd_render, "holdout": cmd_holdout, "detect": cmd_detect, "fit": cmd_fit,
            "evaluate": cmd_evaluate, "crossval": cmd_crossval}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
