"""``eval face-video``: does a capture's face follow the person's face in its own video?

    python -m model_runtime eval face-video CAPTURE.npz --video VIDEO [--json] [--landmarks-cache L.npz]

MediaPipe's face mesh (the shared detector, video mode, refined: iris points) is run on the
video; per frame it gives what the face *did*, in units of the eye-corner distance ``D``
(landmarks 33-263, the outer eye corners), so the figures do not depend on the face's size:

* ``lip_gap``: inner-lip distance (13-14) / D;
* ``lid_closure``: minus the mean over both eyes of lid distance / eye width
  (159-145 / 33-133 and 386-374 / 362-263): higher = more closed;
* ``gaze``: iris centre (468 / 473) relative to its eye's corners, in eye widths (x: towards
  the person's left, y: down), mean of the two eyes.

Figures (Pearson correlation over the frames where the capture is valid and a face was found):

* ``r_jaw_lip``: r(``jawOpen``, lip gap); ``r_blink_lid``: r(mean of ``eyeBlinkLeft/Right``,
  lid closure); ``r_mouth_width``: r(half the sum of ``mouthSmile*``/``mouthStretch*`` minus
  ``mouthPucker`` and ``mouthFunnel``, mouth-corner distance 61-291 / D): the other mouth keys; ``r_gaze_x``/``r_gaze_y``: r(``eyeLook*`` horizontal/vertical, gaze);
  ``closed_lip_jaw``: mean ``jawOpen`` on frames whose lip gap is below 0.02 D;
  ``r_jaw_close_lip``: r(``jawOpen - mouthClose``, lip gap): ARKit's lip opening (``mouthClose``
  closes the lips against an open jaw, so the keys can part the lips without moving ``jawOpen``);
  ``r_avatar_lip``: r(the posed avatar's own lip gap, its landmark points 13-14 projected, / D, lip gap):
  the mouth an animator sees, whatever keys open it;
* ``offset_d``: median over frames of the distance between the centroids of the captured face's
  468 landmark points (the posed avatar, projected with the capture's camera) and MediaPipe's,
  in D; ``landmark_d``: median over frames of the mean per-point distance, in D;
  ``face_scale``: median of the avatar's D in the image over hers; ``eye_width``: median eye
  width (33-133, 362-263) / D of the posed avatar's points and of hers; ``eye_open``: median lid
  openness (lid distance / eye width, both eyes) of the avatar and of hers (a narrow eye held
  open reads as a stare);
* ``colour``: cheek and forehead colour (sRGB 0-255) of the image (median over sample frames of
  a disc of radius 0.08 D around landmarks 50, 280 / 151, 108, 337), of the captured albedo at
  the same surface points, and of the rendered, lit face (albedo x SH irradiance, Eq. 5, with
  the frame's ``face_sh``); ``render_error``: mean absolute sRGB difference render vs image;
  ``colour.face.render_error``: the same over all 468 points that face the camera (the image
  bilinearly at MediaPipe's points, the render at the avatar's: brows, lids, lips and skin), median
  over the sample frames.  The avatar's colour includes the capture's ``face_albedo_detail``.

Measured landmarks can be kept with ``--landmarks-cache`` (reused when the video's frame count
matches).  Figures in docs/face.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import numpy as np

from ..core.capture_file import Capture, load_capture
from ..core.errors import InputMissingError, InputUnreadableError
from ..face.gaze import EYES, eye_offsets
from ..models.face_model import sh_irradiance
from .common import note, print_result

EYE_CORNERS: Final[tuple[int, int]] = (33, 263)
LIPS_INNER: Final[tuple[int, int]] = (13, 14)
MOUTH_CORNERS: Final[tuple[int, int]] = (61, 291)
#: (upper lid, lower lid, corner a, corner b) of the person's right eye, then the left
LIDS: Final[tuple[tuple[int, int, int, int], ...]] = EYES
CHEEKS: Final[tuple[int, ...]] = (50, 280)
FOREHEAD: Final[tuple[int, ...]] = (151, 108, 337)
CLOSED_LIP_GAP: Final[float] = 0.02
COLOUR_FRAMES: Final[int] = 12
PATCH_RADIUS_D: Final[float] = 0.08


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", help="capture .npz")
    p.add_argument("--video", required=True, help="the video the capture was made from")
    p.add_argument("--landmarks-cache", help="keep/reuse MediaPipe's landmarks of the video in this .npz")
    p.add_argument("--json", action="store_true", help="print one JSON object")


# ----------------------------------------------------------------------------- what the face did
def eye_corner_distance(lm: np.ndarray) -> np.ndarray:
    """``(..., 468, >=2)`` px -> ``(...,)`` distance between the outer eye corners."""
    return np.linalg.norm(lm[..., EYE_CORNERS[0], :2] - lm[..., EYE_CORNERS[1], :2], axis=-1)


def lip_gap(lm: np.ndarray) -> np.ndarray:
    """``(..., 468, >=2)`` -> ``(...,)`` inner-lip distance / eye-corner distance."""
    return np.linalg.norm(lm[..., LIPS_INNER[0], :2] - lm[..., LIPS_INNER[1], :2], axis=-1) / eye_corner_distance(lm)


def mouth_width(lm: np.ndarray) -> np.ndarray:
    """``(..., 468, >=2)`` -> ``(...,)`` mouth-corner distance (61-291) / eye-corner distance."""
    return np.linalg.norm(lm[..., MOUTH_CORNERS[0], :2] - lm[..., MOUTH_CORNERS[1], :2], axis=-1) \
        / eye_corner_distance(lm)


def eye_width(lm: np.ndarray) -> np.ndarray:
    """``(..., 468, >=2)`` -> ``(...,)`` the mean of both eyes' corner-to-corner widths (33-133,
    362-263) / D: how wide the eyes are for the face."""
    P = np.asarray(lm)[..., :2]
    w = sum(np.linalg.norm(P[..., a, :] - P[..., b, :], axis=-1) for _, _, a, b in LIDS)
    return 0.5 * w / eye_corner_distance(lm)


def lid_openness(lm: np.ndarray) -> np.ndarray:
    """``(..., 468, >=2)`` -> ``(..., 2)`` lid distance / eye width of the person's [right, left] eye."""
    out = []
    for up, lo, a, b in LIDS:
        out.append(np.linalg.norm(lm[..., up, :2] - lm[..., lo, :2], axis=-1)
                   / np.linalg.norm(lm[..., a, :2] - lm[..., b, :2], axis=-1))
    return np.stack(out, -1)


def lid_closure(lm: np.ndarray) -> np.ndarray:
    """``(..., 468, >=2)`` -> ``(...,)`` minus the mean lid openness of both eyes (higher = more closed)."""
    return -lid_openness(lm).mean(-1)


def iris_gaze(lm: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """Iris centre relative to its eye: ``lm (..., 468, >=2)``, ``iris (..., 10, >=2)`` px ->
    ``(..., 2)`` mean over both eyes of (x towards the person's left, y down) in eye widths
    (:func:`model_runtime.face.gaze.eye_offsets`, the capture's own measure)."""
    return eye_offsets(lm, iris)[0].mean(-2)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Correlation of two ``(T,)`` series (None with < 3 frames or a constant one)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def measure_video(video: Path, num_frames: int | None = None) -> dict[str, np.ndarray]:
    """MediaPipe on every frame of ``video`` -> ``landmarks (T, 468, 3)``, ``iris (T, 10, 3)`` px
    (NaN where no face), ``found (T,)``."""
    import cv2

    from ..detectors import make_detector

    vc = cv2.VideoCapture(str(video))
    if not vc.isOpened():
        raise InputUnreadableError(f"{video}: cannot open the video")
    fps = vc.get(cv2.CAP_PROP_FPS) or 25.0
    lms, irs = [], []
    det = make_detector("mediapipe")
    try:
        i = 0
        while num_frames is None or i < num_frames:
            ok, img = vc.read()
            if not ok:
                break
            d = det.detect(img, timestamp_ms=int(round(1000.0 * i / fps)))
            i += 1
            lm = d.face_landmarks if d.face_landmarks is not None else np.full((468, 3), np.nan)
            ir = d.extras.get("iris_landmarks_px") if d.face_landmarks is not None else None
            lms.append(np.asarray(lm, np.float32))
            irs.append(np.full((10, 3), np.nan, np.float32) if ir is None else np.asarray(ir, np.float32))
    finally:
        det.close()
        vc.release()
    lm, ir = np.stack(lms), np.stack(irs)
    return {"landmarks": lm, "iris": ir, "found": np.isfinite(lm).all((1, 2))}


def cached_measure(video: Path, cache: Path | None, num_frames: int) -> dict[str, np.ndarray]:
    """:func:`measure_video`, read from / written to ``cache`` (reused when it holds ``num_frames``)."""
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if len(z["landmarks"]) == num_frames:
            return {k: z[k] for k in ("landmarks", "iris", "found")}
        note(f"note: {cache} holds {len(z['landmarks'])} frames, the capture {num_frames}: measuring again")
    m = measure_video(video, num_frames)
    if cache is not None:
        np.savez(cache, **m)
    return m


# ----------------------------------------------------------------------------- the captured face
class CapturedFace:
    """The capture's face posed per frame: ``points (T, 468, 3)`` camera space (the shipped
    MediaPipe correspondence on the posed avatar's face), ``albedo_pts (468, 3)`` linear RGB at
    those points, ``normals (T, 468, 3)`` outward, camera space."""

    def __init__(self, cap: Capture, chunk: int = 32):
        from ..core.rotations import rot6d_to_matrix
        from ..face.correspondence import correspondence_for
        from ..face.render import outward_sign
        from ..models.face_model import face_albedo, vertex_normals
        from ..models.full_model import build_full_model
        from ..models.load import load_body_model, load_face_model

        face = load_face_model(str(cap["face_model"]))
        full = build_full_model(load_body_model(str(cap["body_model"])), face)
        corr = correspondence_for(face)
        T = cap.num_frames
        ident = cap["face_identity"].astype(np.float64)
        self.points = np.zeros((T, 468, 3))
        self.normals = np.zeros((T, 468, 3))
        sign = outward_sign(face)
        for s in range(0, T, chunk):
            fr = np.arange(s, min(s + chunk, T))
            n = len(fr)
            rot = rot6d_to_matrix(cap["pose_6d"][fr].astype(np.float64))
            betas = np.broadcast_to(cap["betas"].astype(np.float64), (n, cap["betas"].shape[-1])).copy()
            verts, _ = full.forward(betas, rot, np.broadcast_to(ident, (n, len(ident))).copy(),
                                    cap["face_expression"][fr].astype(np.float64),
                                    cap["transl"][fr].astype(np.float64), np.full(n, float(cap["scale"])))
            fv = verts[:, full.face_vertex_slice]
            self.points[fr] = corr.points(fv)
            nv = sign * vertex_normals(fv, face.faces.astype(np.int64))
            nl = corr.points(nv)
            self.normals[fr] = nl / np.maximum(np.linalg.norm(nl, axis=-1, keepdims=True), 1e-12)
        alb = np.clip(face_albedo(face.mean_albedo, face.albedo_basis, cap["face_albedo"][None].astype(np.float32))[0], 0, 1)
        detail = cap["face_albedo_detail"] if "face_albedo_detail" in cap.data else None
        if detail is not None and detail.shape == alb.shape:         # the avatar's colours (FullBodyModel.vertex_colors)
            alb = np.clip(alb + detail, 0.0, 1.0)
        self.albedo_pts = corr.points(alb[None].astype(np.float64))[0]


def linear_to_srgb255(c: np.ndarray) -> np.ndarray:
    """Linear RGB 0..1 -> sRGB 0..255 by the fitter's gamma 2.2 (``(..., 3)``)."""
    return 255.0 * np.clip(c, 0.0, 1.0) ** (1 / 2.2)


def image_colour(img_bgr: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Mean sRGB ``(3,)`` (RGB order) of the discs of ``radius`` px around ``centres (n, 2)`` px."""
    H, W = img_bgr.shape[:2]
    yy, xx = np.mgrid[0:H, 0:W]
    mask = np.zeros((H, W), bool)
    for cx, cy in centres:
        mask |= (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= radius ** 2
    if not mask.any():
        return np.full(3, np.nan)
    return img_bgr[mask][:, ::-1].astype(np.float64).mean(0)


def colour_figures(cap: Capture, face: CapturedFace, meas: dict, video: Path, frames: np.ndarray) -> dict:
    """Cheek/forehead colours (see the module doc) over ``frames`` (indices with a face)."""
    import cv2

    vc = cv2.VideoCapture(str(video))
    want = set(int(f) for f in frames)
    imgs, i = {}, 0
    while want and i <= max(want):
        ok, img = vc.read()
        if not ok:
            break
        if i in want:
            imgs[i] = img
        i += 1
    vc.release()
    out = {}
    from ..face.albedo_detail import sample_linear

    err = []
    for f, img in imgs.items():                       # the whole face: its 468 points that face the camera
        lm = meas["landmarks"][f]
        facing = -(face.normals[f] * face.points[f]).sum(-1) > 0.3 * np.linalg.norm(face.points[f], axis=-1)
        im = linear_to_srgb255(sample_linear(img, lm[:, :2].astype(np.float64)))
        rn = linear_to_srgb255(face.albedo_pts * sh_irradiance(face.normals[f], cap["face_sh"][f]))
        if facing.any():
            err.append(float(np.abs(rn - im)[facing].mean()))
    out["face"] = {"render_error": round(float(np.median(err)), 1) if err else None}
    for name, ids in (("cheek", CHEEKS), ("forehead", FOREHEAD)):
        ids = list(ids)
        im, rn = [], []
        for f, img in imgs.items():
            lm = meas["landmarks"][f]
            im.append(image_colour(img, lm[ids, :2], PATCH_RADIUS_D * float(eye_corner_distance(lm))))
            irr = sh_irradiance(face.normals[f, ids], cap["face_sh"][f])
            rn.append(linear_to_srgb255(face.albedo_pts[ids] * irr).mean(0))
        im, rn = np.nanmedian(np.array(im), 0), np.median(np.array(rn), 0)
        alb = linear_to_srgb255(face.albedo_pts[ids]).mean(0)
        out[name] = {"image_srgb": [round(float(v)) for v in im], "render_srgb": [round(float(v)) for v in rn],
                     "albedo_srgb": [round(float(v)) for v in alb],
                     "render_error": round(float(np.abs(rn - im).mean()), 1)}
    return out


def evaluate(cap: Capture, meas: dict, video: Path) -> dict:
    """All figures of the module doc for a loaded capture and its measured landmarks."""
    from .render_avatar import project

    names = [str(n) for n in np.atleast_1d(cap["expression_names"])]
    T = min(cap.num_frames, len(meas["landmarks"]))
    use = np.flatnonzero(cap["valid"][:T] & meas["found"][:T])
    if len(use) < 3:
        raise InputUnreadableError(f"{video}: a face was found on {len(use)} of the capture's frames; need 3")
    lm = meas["landmarks"][use].astype(np.float64)
    ex = cap["face_expression"][use].astype(np.float64)
    col = {n: i for i, n in enumerate(names)}
    res: dict = {"frames": int(len(use))}
    gap = lip_gap(lm)
    if "jawOpen" in col:
        jaw = ex[:, col["jawOpen"]]
        res["r_jaw_lip"] = pearson(jaw, gap)
        closed = gap < CLOSED_LIP_GAP
        res["closed_lip_jaw"] = float(jaw[closed].mean()) if closed.any() else None
        res["jaw_range"] = [float(jaw.min()), float(jaw.max())]
        if "mouthClose" in col:
            res["r_jaw_close_lip"] = pearson(jaw - ex[:, col["mouthClose"]], gap)
    wide = ("mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight")
    narrow = ("mouthPucker", "mouthFunnel")
    if all(n in col for n in wide + narrow):
        width_keys = 0.5 * sum(ex[:, col[n]] for n in wide) - sum(ex[:, col[n]] for n in narrow)
        res["r_mouth_width"] = pearson(width_keys, mouth_width(lm))
    if "eyeBlinkLeft" in col and "eyeBlinkRight" in col:
        blink = 0.5 * (ex[:, col["eyeBlinkLeft"]] + ex[:, col["eyeBlinkRight"]])
        res["r_blink_lid"] = pearson(blink, lid_closure(lm))
        res["blink_range"] = [float(blink.min()), float(blink.max())]
    look = [f"eyeLook{d}{s}" for d in ("In", "Out", "Up", "Down") for s in ("Left", "Right")]
    ir = meas["iris"][use].astype(np.float64)
    if all(n in col for n in look) and np.isfinite(ir).all():
        g = iris_gaze(lm, ir)
        e = lambda n: ex[:, col[n]]  # noqa: E731
        # person's left: the left eye looks out, the right eye looks in
        gx = 0.5 * (e("eyeLookOutLeft") - e("eyeLookInLeft") + e("eyeLookInRight") - e("eyeLookOutRight"))
        gy = 0.5 * (e("eyeLookDownLeft") + e("eyeLookDownRight") - e("eyeLookUpLeft") - e("eyeLookUpRight"))
        res["r_gaze_x"], res["r_gaze_y"] = pearson(gx, g[:, 0]), pearson(gy, g[:, 1])
        res["gaze_std"] = [float(g[:, 0].std()), float(g[:, 1].std())]
    if cap["face_identity"].size and cap["face_expression"].shape[1]:
        face = CapturedFace(cap)
        px = project(face.points[use], cap["camera_K"])                 # (n, 468, 2)
        D = eye_corner_distance(lm)
        cen = np.linalg.norm(px.mean(1) - lm[:, :, :2].mean(1), axis=-1) / D
        per = np.linalg.norm(px - lm[:, :, :2], axis=-1).mean(1) / D
        res["r_avatar_lip"] = pearson(lip_gap(px), gap)
        res["offset_d"] = float(np.median(cen))
        res["landmark_d"] = float(np.median(per))
        res["face_scale"] = float(np.median(eye_corner_distance(px) / D))   # the avatar's face size / hers
        res["eye_width"] = {"avatar": float(np.median(eye_width(px))), "image": float(np.median(eye_width(lm)))}
        res["eye_open"] = {"avatar": float(np.median(lid_openness(px).mean(-1))),
                           "image": float(np.median(lid_openness(lm).mean(-1)))}
        sample = use[np.linspace(0, len(use) - 1, min(COLOUR_FRAMES, len(use))).round().astype(int)]
        res["colour"] = colour_figures(cap, face, meas, video, sample)
    return res


def run(args: argparse.Namespace) -> int:
    video = Path(args.video)
    if not video.is_file():
        raise InputMissingError(f"{video}: video file not found")
    cap = load_capture(args.capture)
    cache = Path(args.landmarks_cache) if args.landmarks_cache else None
    meas = cached_measure(video, cache, cap.num_frames)
    res = {"capture": str(args.capture), "video": str(video), **evaluate(cap, meas, video)}
    print_result(res, args.json)
    return 0
