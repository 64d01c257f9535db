"""Synthetic FaceNet training crops: the face model rendered at any head pose, with exact labels.

The real material (:mod:`.facenet_data`) holds six talking people, nearly all frontal, so FaceNet
fails on profile faces (AFLW2000's profile image at ~37 % NME, docs/facenet.md).  This source adds
renders of random faces of the project's own 3DMM (Sec. 3.1, Eq. 3-5: :func:`.render.render_face`):

* identity ``~ N(0, 0.6^2)`` per coefficient, albedo ``~ N(0, 1)`` (light to dark skin), sparse ARKit
  expressions (``jawOpen`` and the blinks most often, the ``eyeLook*`` keys, which the tracker
  holds, left at 0), SH lighting: a white-ish ambient band plus random first- and second-order
  bands;
* head pose: yaw uniform in +-:data:`MAX_YAW_DEG` (half the samples beyond 40 degrees), pitch
  +-25, roll +-20 degrees, at 0.6-1.1 m through a 30-degree camera (the cache's ``K``);
* eyes drawn into MediaPipe's eye rings where the rendered surface there is the eye's own (not the
  nose in front of a far eye): sclera and a dark iris;
* backgrounds: person-free regions of the real photos (:mod:`model_runtime.synth.background`),
  else a plain random colour.

Each sample is stored exactly as :func:`.facenet_data.cache_source` stores a real face frame: the
crop :data:`~.facenet_data.STORE_SCALE` x the landmark box around its centre, the 468 landmark points
of the rendered mesh (:mod:`.correspondence`, the points MediaPipe would report, occluded ones
included), the skin mask of those points, ``A``, ``K``, and as "teacher" the exact pose and
coefficients (``teacher_error_px`` 0).  Training then treats it as one more cached source
(``synth_faces.npz``; :class:`~.train_facenet.TrainConfig` ``synth_share`` sets its share of a batch).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Final

import numpy as np

#: name of the cache file (and source) of the synthetic crops; training recognises it by this prefix
SYNTH_PREFIX: Final[str] = "synth_"
SYNTH_SOURCE: Final[str] = "synth_faces"
MAX_YAW_DEG: Final[float] = 90.0
CANVAS: Final[int] = 320                   # render size (px); the stored crop is cut from it


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Face model -> camera rotation ``(3, 3)``: the frontal pose ``diag(1, -1, -1)`` (model y up, facing
    the camera) turned by yaw (about camera y), pitch (x), roll (z), radians."""
    from scipy.spatial.transform import Rotation

    turn = Rotation.from_euler("zxy", [roll, pitch, yaw]).as_matrix()
    return turn @ np.diag([1.0, -1.0, -1.0])


def sample_parameters(model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One random face: ``identity``, ``expression``, ``albedo``, ``sh (27,)``, ``rotation (3, 3)``,
    ``translation (3,)`` (metres, camera) and ``yaw_deg``."""
    names = list(model.exp_names)
    sizes = model.sizes
    e = np.zeros(sizes["expression"])
    active = rng.random(len(e)) < 0.12
    e[active] = rng.random(active.sum()) ** 1.5
    idx = {n: i for i, n in enumerate(names)}
    if "jawOpen" in idx and rng.random() < 0.45:
        e[idx["jawOpen"]] = rng.random() ** 1.2
    if "eyeBlinkLeft" in idx and rng.random() < 0.2:
        b = rng.uniform(0.5, 1.0)
        e[idx["eyeBlinkLeft"]] = e[idx["eyeBlinkRight"]] = b
    for n in names:                                   # gaze: held by the tracker, from the iris
        if n.startswith("eyeLook") or n == "tongueOut":
            e[idx[n]] = 0.0
    if model.kind != "builtin":                       # BFM: unbounded PCA coefficients
        e = rng.normal(0.0, 0.8, len(e))
    sh = np.zeros((3, 9))
    sh[:, 0] = rng.uniform(0.55, 1.1) * np.exp(rng.normal(0.0, 0.06, 3))
    sh[:, 1:4] = rng.normal(0.0, 0.25, 3)[None] * sh[:, :1]
    sh[:, 4:] = rng.normal(0.0, 0.08, 5)[None] * sh[:, :1]
    big = rng.random() < 0.5                          # half beyond 40 degrees of yaw
    yaw = rng.uniform(40.0, MAX_YAW_DEG) * rng.choice([-1.0, 1.0]) if big else rng.uniform(-40.0, 40.0)
    R = _rotation(math.radians(yaw), math.radians(rng.uniform(-25, 25)), math.radians(rng.uniform(-20, 20)))
    z = rng.uniform(0.6, 1.1)
    centre = np.asarray(model.mean_shape, np.float64).mean(0)          # the model's origin is not the face's
    t = np.array([rng.normal(0.0, 0.02), rng.normal(0.0, 0.02), z]) - R @ centre
    return {"identity": rng.normal(0.0, 0.6, sizes["identity"]), "expression": e,
            "albedo": rng.normal(0.0, 1.0, sizes["albedo"]), "sh": sh.reshape(-1), "rotation": R,
            "translation": t, "yaw_deg": np.float64(yaw)}


def _draw_eyes(img: np.ndarray, lm_px: np.ndarray, lm_depth: np.ndarray, depth: np.ndarray,
               rng: np.random.Generator, light: float) -> None:
    """Sclera and iris inside MediaPipe's eye rings ``lm_px (468, 2)``, on the pixels whose rendered
    depth (``depth (H, W)``, inf off the mesh) is within 1.5 cm of the ring's: in place, ``img`` BGR."""
    import cv2

    from .landmarks import MP_LEFT_EYE_RING, MP_RIGHT_EYE_RING

    H, W = depth.shape
    iris = np.array(rng.choice([(30, 45, 70), (40, 70, 110), (90, 80, 50), (25, 30, 35)]), np.float64)
    for ring in (MP_LEFT_EYE_RING, MP_RIGHT_EYE_RING):
        ring = list(ring)
        poly = np.round(lm_px[ring]).astype(np.int32)
        mask = np.zeros((H, W), np.uint8)
        cv2.fillPoly(mask, [poly], 1)
        near = np.abs(depth - float(np.median(lm_depth[ring]))) < 0.015
        sel = (mask > 0) & near
        if sel.sum() < 3:
            continue
        width = float(np.ptp(lm_px[ring, 0]))
        centre = lm_px[ring].mean(0)
        yy, xx = np.nonzero(sel)
        d = np.hypot(xx - centre[0], yy - centre[1])
        colour = np.where((d < 0.22 * width)[:, None], iris[None], np.array([215.0, 220.0, 225.0])[None])
        img[yy, xx] = np.clip(colour * light, 0, 255).astype(np.uint8)


def _draw_head(img: np.ndarray, model, R: np.ndarray, t: np.ndarray, K: np.ndarray, skin: np.ndarray,
               rng: np.random.Generator) -> None:
    """A crude head behind the face patch (which has no scalp, ears or neck), in place on ``img`` BGR:
    a hair-coloured skull ellipse, a skin-coloured lower half and a neck, posed with ``R``, ``t``
    (face model -> camera), so the crop is not a face floating on the background."""
    import cv2

    from .render import project

    centre = np.asarray(model.mean_shape, np.float64).mean(0)
    up, fwd = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])       # model axes (frontal: y up, z to camera)
    skull = centre - 0.07 * fwd + 0.025 * up
    pts = np.stack([skull, skull + 0.09 * np.array([1.0, 0, 0]), skull + 0.12 * up, centre - 0.11 * up - 0.03 * fwd,
                    centre - 0.22 * up - 0.05 * fwd])
    px = project(pts @ R.T + t, K)
    c, ax_x, ax_y = px[0], float(np.linalg.norm(px[1] - px[0])), float(np.linalg.norm(px[2] - px[0]))
    ang = math.degrees(math.atan2(px[2][0] - c[0], -(px[2][1] - c[1])))
    hair = rng.uniform(10, 90) * np.array([1.0, 1.1, 1.25]) * rng.uniform(0.7, 1.3, 3)
    ax_x = max(ax_x, 0.75 * ax_y)                                         # a turned head is still round
    neck_w = max(int(0.55 * ax_x), 2)
    cv2.line(img, tuple(int(v) for v in np.round(px[3])), tuple(int(v) for v in np.round(px[4])),
             tuple(float(v) for v in 0.8 * skin), neck_w, cv2.LINE_AA)
    cv2.ellipse(img, ((float(c[0]), float(c[1])), (2 * ax_x, 2 * ax_y), ang), tuple(float(v) for v in hair),
                -1, cv2.LINE_AA)


def render_sample(model, corr, params: dict, background: np.ndarray | None, rng: np.random.Generator,
                  canvas: int = CANVAS) -> dict[str, np.ndarray] | None:
    """Render one face of :func:`sample_parameters` on ``background`` (``(canvas, canvas, 3)`` BGR uint8,
    or None: a plain colour) and cut it like a cached real frame -> the row of the cache's arrays
    (:mod:`.facenet_data`), or None when the face is too small or leaves the canvas."""
    from ..models.face_model import face_geometry
    from .facenet import crop_affine, crop_box, cut_crops
    from .facenet_data import MIN_FACE_PX, STORE_SCALE, STORE_SIZE
    from .fit import skin_mask
    from .render import intrinsics, project, render_face

    K = intrinsics(canvas, canvas)
    R, t = params["rotation"], params["translation"]
    img, raster = render_face(model, params["identity"], params["expression"], params["albedo"], params["sh"],
                              R, t, K, canvas, canvas)
    verts = face_geometry(np.asarray(model.mean_shape, np.float64), np.asarray(model.id_basis, np.float64),
                          np.asarray(model.exp_basis, np.float64), params["identity"][None],
                          params["expression"][None])[0]
    cam = verts @ R.T + t
    lm3 = corr.points(cam[None])[0]                                    # (468, 3) camera
    lm = project(lm3, K)
    lo, hi = lm.min(0), lm.max(0)
    if max(hi - lo) < MIN_FACE_PX or (lo < 0).any() or (hi >= canvas).any():
        return None
    mask = raster.mask.numpy()
    if background is None:
        background = np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), img.shape)
    back = np.array(background, np.uint8, copy=True)
    skin = np.median(img[mask], 0) if mask.any() else np.array([120.0, 140.0, 180.0])
    _draw_head(back, model, R, t, K, skin, rng)
    out = np.where(mask[..., None], img, back).astype(np.uint8)
    ambient = float(np.clip(params["sh"][0::9].mean(), 0.3, 1.2)) ** (1 / 2.2)
    _draw_eyes(out, lm, lm3[:, 2], np.where(mask, raster.depth.numpy(), np.inf), rng, ambient)
    box = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
    A = crop_affine(crop_box(box[None], STORE_SCALE), STORE_SIZE)[0]
    lm_c = lm @ A[:, :2].T + A[:, 2]
    return {"crop": cut_crops(out, A[None], STORE_SIZE)[0], "landmarks": lm_c.astype(np.float32),
            "mask": skin_mask(lm_c, STORE_SIZE, STORE_SIZE), "A": A.astype(np.float32), "K": K.astype(np.float32),
            "rotation": R.astype(np.float32), "translation": t.astype(np.float32),
            "expression": params["expression"].astype(np.float32), "identity": params["identity"].astype(np.float32),
            "albedo": params["albedo"].astype(np.float32), "sh": params["sh"].astype(np.float32),
            "teacher_error_px": np.float32(0.0), "frame": np.int64(-1), "yaw_deg": np.float32(params["yaw_deg"])}


def smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random background ``(size, size, 3)`` BGR uint8: a coarse random colour grid (2-8 cells) upsampled
    bicubically, plus fine grain."""
    import cv2

    cells = int(rng.integers(2, 9))
    grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0.0, rng.uniform(0, 12), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def backgrounds(realdata: Path | None):
    """A function ``(rng, size) -> (size, size, 3) BGR uint8``: half the time a person-free region of a
    real photo under ``realdata`` (where one is found), else :func:`smooth_noise`."""
    import torch

    from ..synth.background import real_background, real_images, real_region

    images = real_images(str(realdata)) if realdata is not None else ()

    def pick(rng: np.random.Generator, size: int):
        for _ in range(4 if images and rng.random() < 0.5 else 0):
            img = images[int(rng.integers(len(images)))]
            region = real_region(img, torch.as_tensor(rng.random((32, 4))), 1.0)
            if region is not None:
                rgb = real_background(img, region, size, size, "cpu").numpy()
                return np.ascontiguousarray((rgb[..., ::-1] * 255.0 + 0.5).astype(np.uint8))
        return smooth_noise(rng, size)

    return pick


def build_synth_source(model, corr, n: int, out_path: Path, realdata: Path | None = None, seed: int = 0,
                       log: Callable[[str], None] = print) -> int:
    """Render ``n`` faces into ``out_path`` (the cache's ``.npz`` layout plus ``yaw_deg (F,)``); -> faces written."""
    import time

    rng = np.random.default_rng(seed)
    pick = backgrounds(realdata)
    rows: dict[str, list] = {}
    t0 = time.perf_counter()
    tries = 0
    while len(rows.get("crop", ())) < n and tries < 3 * n:
        tries += 1
        row = render_sample(model, corr, sample_parameters(model, rng), pick(rng, CANVAS), rng)
        if row is None:
            continue
        for k, v in row.items():
            rows.setdefault(k, []).append(v)
        if len(rows["crop"]) % 250 == 0:
            log(f"synthetic faces: {len(rows['crop'])}/{n} ({time.perf_counter() - t0:.0f} s)")
    if not rows:
        return 0
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: np.stack(v) for k, v in rows.items()})
    tmp.replace(out_path)
    return len(rows["crop"])
