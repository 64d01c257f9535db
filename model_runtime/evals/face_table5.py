"""``python -m model_runtime eval face-table5 VIDEO... [--json]``: the paper's Table 5 metrics on real clips.

For every ``--every``-th frame with a face (MediaPipe, video mode) and each method:

* ``fit``: the capture's fit (:class:`face.stage.FaceFitStage`: landmark tracker, closed-form albedo and
  lighting on every evaluated frame);
* ``net``: FaceNet per frame on a *coarse* box: the landmark box jittered as a body-keypoint box would be
  (centre +-10 % of the side, side x exp(N(0, 0.15)), fixed seed);
* ``net-T``: FaceNet per frame on the tight box (MediaPipe's landmark box, what the capture uses);
* ``net+fit``: :class:`face.facenet_stage.NetFitFaceStage` (FaceNet initialises the fit);

it reports the **landmark error** (mean distance of the model's 468 correspondence points to MediaPipe's
landmarks, px of the frame and % of the face size sqrt(w h)) and the **photometric error per channel**
(mean |image - render| over the visible skin vertices, sRGB 0..1, the three channels averaged; skin =
MediaPipe's face oval minus eyes, brows and lips, visibility = facing the camera and a vertex z-buffer).
MediaPipe's landmarks are the reference (no ground-truth meshes exist for these clips).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

METHODS = ("fit", "net", "net-T", "net+fit")


def add_arguments(parser) -> None:
    parser.add_argument("videos", nargs="+", type=Path, help="video files (talking heads)")
    parser.add_argument("--every", type=int, default=3, help="evaluate every N-th frame (default 3)")
    parser.add_argument("--limit", type=int, default=0, help="at most N evaluated frames per video (0 = all)")
    parser.add_argument("--face-model", default="builtin")
    parser.add_argument("--facenet-weights", type=Path, default=None)
    parser.add_argument("--facenet-profile", default=None,
                        help="FaceNet's profile expert .pt, or 'none' (default: the one beside the weights, if any)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seed of the coarse-box jitter")


def frame_metrics(model, corr, params: dict, image_bgr: np.ndarray, landmarks: np.ndarray, K: np.ndarray
                  ) -> tuple[float, float, float]:
    """``params``: identity, expression, albedo, sh, rotation ``(3, 3)``, translation ``(3,)`` (image camera);
    ``landmarks (468, 2+)`` px -> ``(landmark error px, landmark error % face size, photometric error)``."""
    import torch

    from ..face.fit import skin_mask
    from ..face.render import outward_sign, project
    from ..face.train_facenet import visible
    from ..models.face_model import face_albedo, face_geometry, sh_shading, vertex_normals

    t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
    verts = face_geometry(t(model.mean_shape), t(model.id_basis), t(model.exp_basis), t(params["identity"])[None],
                          t(params["expression"])[None])
    R, tr = t(params["rotation"]), t(params["translation"])
    cam = verts[0] @ R.T + tr
    Kt = t(K)
    px = project(cam, Kt)
    lm = corr.points(px[None])[0].numpy()
    ref = np.asarray(landmarks, np.float64)[:, :2]
    d = np.linalg.norm(lm - ref, axis=1).mean()
    span = ref.max(0) - ref.min(0)
    size = float(np.sqrt(max(span[0] * span[1], 1.0)))
    normals = outward_sign(model) * vertex_normals(verts, model.faces)[0] @ R.T
    vis = visible(cam[None], px[None], normals[None], 96)[0].bool().numpy()
    H, W = image_bgr.shape[:2]
    mask = skin_mask(ref, H, W)
    p = px.numpy()
    ij = np.floor(p).astype(int)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < W) & (ij[:, 1] >= 0) & (ij[:, 1] < H)
    ok = vis & inside
    ok[ok] = mask[ij[ok, 1], ij[ok, 0]] > 0
    if ok.sum() < 20:
        return float(d), 100.0 * float(d) / size, float("nan")
    refl = face_albedo(t(model.mean_albedo), t(model.albedo_basis), t(params["albedo"])[None])
    col = sh_shading(refl, normals[None], t(params["sh"])[None])[0].clamp(0, 1) ** (1 / 2.2)
    g = torch.as_tensor(p[ok] / [W, H] * 2 - 1, dtype=torch.float32)
    img = torch.as_tensor(image_bgr[..., ::-1].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    obs = torch.nn.functional.grid_sample(img, g[None, None], mode="bilinear", align_corners=False)[0, :, 0].T
    photo = float((obs - col[torch.as_tensor(ok)]).abs().mean())
    return float(d), 100.0 * float(d) / size, photo


def _coarse_box(box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = float(max(box[2], box[3]))
    c = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2]) + rng.normal(0, 0.1 * side, 2)
    s = side * float(np.exp(rng.normal(0, 0.15)))
    return np.array([c[0] - s / 2, c[1] - s / 2, s, s])


def evaluate_video(path: Path, model, corr, net, every: int, limit: int, seed: int, log=None) -> dict:
    """All :data:`METHODS` on one video -> ``{method: {landmark_px, landmark_pct, photometric, ms, frames}}``."""
    from ..capture.sources import open_source
    from ..detectors import make_detector
    from ..face.fit import FaceFitter
    from ..face.facenet_stage import NetFitFaceStage
    from ..face.render import intrinsics
    from ..face.stage import FaceFitStage

    rng = np.random.default_rng(seed)
    stages = {"fit": FaceFitStage(FaceFitter(model)), "net+fit": NetFitFaceStage(FaceFitter(model), net)}
    res = {m: {"landmark_px": [], "landmark_pct": [], "photometric": [], "ms": []} for m in METHODS}
    detector = make_detector("mediapipe")
    n = 0
    try:
        with open_source(str(path)) as src:
            for i, fr in enumerate(src):
                det = detector.detect(fr.image, int(round(fr.time * 1000)))
                if i % every or det.face_landmarks is None or det.face_box is None:
                    continue
                H, W = fr.image.shape[:2]
                K = intrinsics(W, H)
                if n == 0:
                    for st in stages.values():
                        st.reset(K)
                params = {}
                for m, st in stages.items():
                    t0 = time.perf_counter()
                    tracked = st.track(fr.image, det)
                    if tracked is None:
                        continue
                    tr = tracked[1][0]
                    sh = st.fit_appearance(fr.image, det, tracked[1])
                    ident, albedo = st.clip_params()
                    res[m]["ms"].append(1000 * (time.perf_counter() - t0))
                    params[m] = dict(identity=ident, albedo=albedo, expression=tr.expression, rotation=tr.rotation,
                                     translation=tr.translation, sh=sh if sh is not None else st.current_sh())
                for m, box in (("net-T", det.face_box), ("net", _coarse_box(det.face_box, rng))):
                    t0 = time.perf_counter()
                    pred, R, t = net.predict(fr.image, np.asarray(box, np.float64)[None], K)
                    res[m]["ms"].append(1000 * (time.perf_counter() - t0))
                    params[m] = dict(identity=pred.identity[0], albedo=pred.albedo[0], expression=pred.expression[0],
                                     sh=pred.sh[0], rotation=R[0], translation=t[0])
                for m, p in params.items():
                    lp, lpct, ph = frame_metrics(model, corr, p, fr.image, det.face_landmarks, K)
                    res[m]["landmark_px"].append(lp)
                    res[m]["landmark_pct"].append(lpct)
                    res[m]["photometric"].append(ph)
                n += 1
                if limit and n >= limit:
                    break
    finally:
        detector.close()
    out = {}
    for m, r in res.items():
        out[m] = {k: float(np.nanmean(v)) if len(v) else None for k, v in r.items()}
        out[m]["frames"] = len(r["landmark_px"])
    if log:
        log(f"{path.name}: {n} frames")
    return out


def run(args) -> int:
    import sys

    import torch

    from ..core.errors import InputMissingError
    from ..face.correspondence import correspondence_for
    from ..face.facenet import FaceNet
    from ..models.load import load_face_model

    torch.set_num_threads(1)
    from ..core.blas import limit_numpy_blas_threads

    limit_numpy_blas_threads(1)
    for v in args.videos:
        if not v.is_file():
            raise InputMissingError(f"{v}: no such file")
    model = load_face_model(args.face_model)
    corr = correspondence_for(model)
    net = FaceNet(model, weights=args.facenet_weights, profile=args.facenet_profile)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    per_video = {v.name: evaluate_video(v, model, corr, net, max(1, args.every), args.limit, args.seed, log)
                 for v in args.videos}
    overall = {}
    for m in METHODS:
        rows = [r[m] for r in per_video.values() if r[m]["frames"]]
        w = np.array([r["frames"] for r in rows], float)
        overall[m] = {k: float(np.average([r[k] for r in rows], weights=w)) if rows else None
                      for k in ("landmark_px", "landmark_pct", "photometric", "ms")}
        overall[m]["frames"] = int(w.sum())
    out = {"overall": overall, "videos": per_video}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'method':10s} {'landmark px':>12s} {'landmark %':>11s} {'photometric':>12s} {'ms/face':>8s} frames")
    for m, r in overall.items():
        print(f"{m:10s} {r['landmark_px']:12.2f} {r['landmark_pct']:11.2f} {r['photometric']:12.4f} "
              f"{r['ms']:8.1f} {r['frames']}")
    return 0
