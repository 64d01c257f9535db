"""Extra figures of ``eval video`` (issue 10, feet and hands), beside the required ones of
:mod:`.video`: keys ``feet`` and ``hands`` of its JSON.  ``None`` where nothing could be measured.

``feet``:

* ``contact_fraction`` [left, right]: valid frames the file labels as planted (``foot_contact``);
* ``slide_lowest20_mm_per_frame``: the foot slide measured as for a file without labels (the
  lowest 20 % of each ankle's heights, above ``ground_plane`` when the file has one, else along
  camera ``-y``), so that captures with and without labels compare on the same frames' rule;
* ``root_depth_range_m``: 5th to 95th percentile of the pelvis depth over valid frames;
  ``root_depth_accel_mm_per_frame2``: mean ``|z[t+1] - 2 z[t] + z[t-1]|`` of the pelvis depth (the
  pumping of the depth with the motion);
* ``ground_plane``: whether the file holds one.

``hands`` (frames where the detector's hand is confident: its wrist, the index, middle and pinky
bases and the five tips at >= 0.5; the detector's 3D hand rows of ``keypoints_3d`` are in camera
axes):

* ``wrist_body_vs_hand_px``: median image distance between the body detector's wrist and the
  hand detector's wrist (how far the two detections disagree);
  ``wrist_model_vs_hand_px``: the model's wrist against the hand detector's;
* ``direction_deg``: median angle between the model's hand direction (wrist to middle base) and
  the detector's; ``palm_normal_deg``: the same for the palm normal (index base - wrist) x
  (pinky base - wrist), i.e. the hand's orientation about its own axis;
* ``curl_diff_deg``: median absolute difference of the finger curl (angle between the bone from
  the wrist to a finger's base and the one from its base to its tip, 0 = straight) of the four
  fingers, model against detector; ``open_kept``: of the detector's open hands (mean curl of the
  four fingers below :data:`OPEN_CURL_DEG`), the fraction the model shows open as well;
* ``at_face_kept``: of the frames where a detected hand is at the face (its mean point inside
  the face's box: nose, eyes and ears, widened by :data:`FACE_BOX_MARGIN` of its size, at least a
  quarter of the shoulder width), the fraction where the model's hand is there too; ``at_face_frames``
  counts them.
"""
from __future__ import annotations

from typing import Final

import numpy as np

from ..core.capture_file import Capture
from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES, JOINT_NAMES

NB: Final[int] = len(BODY_KEYPOINT_NAMES)
NH: Final[int] = len(HAND21_NAMES)
CONF: Final[float] = 0.5
OPEN_CURL_DEG: Final[float] = 35.0
FACE_BOX_MARGIN: Final[float] = 0.5
_H = {n: i for i, n in enumerate(HAND21_NAMES)}
#: rows of a hand that must be confident: wrist, bases of index/middle/pinky, the five tips
HAND_CORE: Final[np.ndarray] = np.array([_H[n] for n in ("wrist", "index1", "middle1", "pinky1", "thumb4",
                                                        "index4", "middle4", "ring4", "pinky4")])
FINGERS: Final[tuple[str, ...]] = ("index", "middle", "ring", "pinky")
BODY_WRISTS: Final[np.ndarray] = np.array([BODY_KEYPOINT_NAMES.index("left_wrist"),
                                           BODY_KEYPOINT_NAMES.index("right_wrist")])
FACE: Final[np.ndarray] = np.array([BODY_KEYPOINT_NAMES.index(n) for n in
                                    ("nose", "left_eye", "right_eye", "left_ear", "right_ear")])
SHOULDERS: Final[np.ndarray] = np.array([BODY_KEYPOINT_NAMES.index("left_shoulder"),
                                         BODY_KEYPOINT_NAMES.index("right_shoulder")])
ANKLES: Final[np.ndarray] = np.array([JOINT_NAMES.index("left_ankle"), JOINT_NAMES.index("right_ankle")])
PELVIS: Final[int] = JOINT_NAMES.index("pelvis")


def _median(x: np.ndarray) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between vectors ``(..., 3)`` in degrees."""
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    c = (a * b).sum(-1) / np.maximum(na * nb, 1e-12)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def finger_curl_deg(hand: np.ndarray) -> np.ndarray:
    """``hand (..., 21, 3)`` in :data:`HAND21_NAMES` order -> ``(..., 4)`` curl of index, middle,
    ring and pinky: angle between wrist->base and base->tip (degrees)."""
    w = hand[..., _H["wrist"], :]
    out = [_angle_deg(hand[..., _H[f"{f}1"], :] - w, hand[..., _H[f"{f}4"], :] - hand[..., _H[f"{f}1"], :])
           for f in FINGERS]
    return np.stack(out, -1)


def hand_frames(hand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``hand (..., 21, 3)`` -> ``(direction (..., 3), palm normal (..., 3))``."""
    w = hand[..., _H["wrist"], :]
    d = hand[..., _H["middle1"], :] - w
    n = np.cross(hand[..., _H["index1"], :] - w, hand[..., _H["pinky1"], :] - w)
    return d, n


def feet_figures(cap: Capture, joints: np.ndarray, slide_lowest20: float | None) -> dict:
    valid = cap["valid"].astype(bool)
    fc = np.asarray(cap["foot_contact"], bool) & valid[:, None]
    z = joints[:, PELVIS, 2]
    acc = np.abs(z[2:] - 2 * z[1:-1] + z[:-2])
    ok = valid[2:] & valid[1:-1] & valid[:-2]
    plane = np.asarray(cap.data.get("ground_plane", np.zeros(4)), np.float64).reshape(-1)
    return {
        "contact_fraction": [float(fc[valid, f].mean()) if valid.any() else None for f in range(2)],
        "slide_lowest20_mm_per_frame": slide_lowest20,
        "root_depth_range_m": (float(np.percentile(z[valid], 95) - np.percentile(z[valid], 5))
                               if valid.any() else None),
        "root_depth_accel_mm_per_frame2": float(acc[ok].mean() * 1000) if ok.any() else None,
        "ground_plane": bool(plane.size == 4 and np.linalg.norm(plane[:3]) > 0),
    }


def hands_figures(cap: Capture, model_kp: np.ndarray, model_px: np.ndarray) -> dict:
    """``model_kp (T, 66, 3)`` camera space, ``model_px (T, 66, 2)`` projected; see the module docstring."""
    valid = cap["valid"].astype(bool)
    kp2 = cap["keypoints_2d"].astype(np.float64)
    kp3 = cap["keypoints_3d"].astype(np.float64)
    T = len(valid)
    det2 = kp2[:, NB:].reshape(T, 2, NH, 3)
    det3 = kp3[:, NB:].reshape(T, 2, NH, 3)
    mod3 = model_kp[:, NB:].reshape(T, 2, NH, 3)
    modp = model_px[:, NB:].reshape(T, 2, NH, 2)
    ok = (det2[..., HAND_CORE, 2] >= CONF).all(-1) & valid[:, None]                     # (T, 2)
    body_w = kp2[:, BODY_WRISTS]                                                        # (T, 2, 3)
    both = ok & (body_w[..., 2] >= CONF)
    d_det, n_det = hand_frames(det3)
    d_mod, n_mod = hand_frames(mod3)
    curl_det, curl_mod = finger_curl_deg(det3), finger_curl_deg(mod3)                  # (T, 2, 4)
    open_det = curl_det.mean(-1) < OPEN_CURL_DEG
    open_mod = curl_mod.mean(-1) < OPEN_CURL_DEG
    opened = ok & open_det
    # hands at the face (image): the detected hand's mean point inside the face box
    face = kp2[:, FACE]
    fseen = face[..., 2] >= CONF
    big = np.where(fseen, 0, np.inf)
    lo = np.min(face[..., :2] + big[..., None], axis=1)
    hi = np.max(face[..., :2] - big[..., None], axis=1)
    sh = kp2[:, SHOULDERS]
    sw = np.where((sh[..., 2] >= CONF).all(-1), np.linalg.norm(sh[:, 0, :2] - sh[:, 1, :2], axis=-1), 0.0)
    size = np.maximum(np.max(hi - lo, axis=-1), 0.25 * sw)
    lo, hi = lo - FACE_BOX_MARGIN * size[:, None], hi + FACE_BOX_MARGIN * size[:, None]
    face_ok = fseen.sum(-1) >= 3

    def at_face(p: np.ndarray) -> np.ndarray:                                         # p (T, 2, 2)
        return ((p >= lo[:, None]) & (p <= hi[:, None])).all(-1) & face_ok[:, None]

    det_at = at_face(det2[..., :2].mean(-2)) & ok
    mod_at = at_face(modp.mean(-2))
    return {
        "frames": int(ok.sum()),
        "wrist_body_vs_hand_px": _median(np.linalg.norm(body_w[..., :2] - det2[..., 0, :2], axis=-1)[both]),
        "wrist_model_vs_hand_px": _median(np.linalg.norm(modp[..., 0, :] - det2[..., 0, :2], axis=-1)[ok]),
        "direction_deg": _median(_angle_deg(d_mod, d_det)[ok]),
        "palm_normal_deg": _median(_angle_deg(n_mod, n_det)[ok]),
        "curl_diff_deg": _median(np.abs(curl_mod - curl_det)[ok]),
        "open_kept": float(open_mod[opened].mean()) if opened.any() else None,
        "open_frames": int(opened.sum()),
        "at_face_kept": float(mod_at[det_at].mean()) if det_at.any() else None,
        "at_face_frames": int(det_at.sum()),
    }
