"""Picture grid of synthetic samples with their labels drawn (for people, not for training).

Per sample: the image with the body skeleton (visible keypoints filled, hidden ones as rings),
both hands (left orange, right cyan), the 68 face landmarks, the face box and the hand crop
boxes, the person mask's outline; under it the two hand crops and the face crop with their
keypoints mapped into the crop.
"""
from __future__ import annotations

from typing import Final

import numpy as np

from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES
from .batch import SynthBatch

_B = {n: i for i, n in enumerate(BODY_KEYPOINT_NAMES)}
BODY_EDGES: Final = [(_B[a], _B[b]) for a, b in (
    ("pelvis", "left_hip"), ("pelvis", "right_hip"), ("left_hip", "left_knee"), ("right_hip", "right_knee"),
    ("left_knee", "left_ankle"), ("right_knee", "right_ankle"), ("left_ankle", "left_heel"), ("right_ankle", "right_heel"),
    ("left_ankle", "left_big_toe"), ("right_ankle", "right_big_toe"), ("pelvis", "neck"), ("neck", "head"),
    ("neck", "left_shoulder"), ("neck", "right_shoulder"), ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("head", "nose"), ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"))]
HAND_EDGES: Final = [(0, 1 + 4 * f) for f in range(5)] + [(1 + 4 * f + k, 2 + 4 * f + k) for f in range(5) for k in range(3)]
_HAND_COLOURS: Final = ((0, 140, 255), (255, 200, 0))            # BGR: left orange, right cyan
assert len(HAND21_NAMES) == 21


def _pt(p, s):
    return int(round(float(p[0]) * s * 16)), int(round(float(p[1]) * s * 16))


def _points(img, pts, vis, colour, s, r=3):
    import cv2

    for p, v in zip(pts, vis):
        cv2.circle(img, _pt(p, s), r * 16, colour, -1 if v else 1, cv2.LINE_AA, shift=4)


def _lines(img, pts, edges, colour, s, t=1):
    import cv2

    for a, b in edges:
        cv2.line(img, _pt(pts[a], s), _pt(pts[b], s), colour, t, cv2.LINE_AA, shift=4)


def _bgr(chw) -> np.ndarray:
    return np.ascontiguousarray((chw.detach().cpu().numpy().transpose(1, 2, 0)[..., ::-1] * 255 + 0.5).astype(np.uint8))


def draw_sample(b: SynthBatch, i: int, width: int = 384) -> np.ndarray:
    """One sample with labels: ``(H', width, 3)`` BGR uint8 (image, then a row of crops)."""
    import cv2

    H, W = b.image.shape[-2:]
    s = width / W
    img = cv2.resize(_bgr(b.image[i]), (width, int(round(H * s))), interpolation=cv2.INTER_AREA)
    m = b.mask[i].cpu().numpy().astype(np.uint8)
    m = cv2.resize(m, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    body, bv = b.body_2d[i].cpu().numpy(), b.body_vis[i].cpu().numpy()
    _lines(img, body, BODY_EDGES, (0, 220, 0), s, 2)
    _points(img, body, bv, (0, 255, 0), s)
    for h in range(2):
        pts, vis = b.hand_2d[i, h].cpu().numpy(), b.hand_vis[i, h].cpu().numpy()
        _lines(img, pts, HAND_EDGES, _HAND_COLOURS[h], s)
        _points(img, pts, vis, _HAND_COLOURS[h], s, 1)
        x0, y0, x1, y1 = b.hand_box[i, h].cpu().numpy()
        cv2.rectangle(img, _pt((x0, y0), s), _pt((x1, y1), s), _HAND_COLOURS[h], 1, cv2.LINE_AA, shift=4)
    _points(img, b.face_68[i].cpu().numpy(), b.face_68_vis[i].cpu().numpy(), (255, 0, 255), s, 1)
    x0, y0, x1, y1 = b.face_box[i].cpu().numpy()
    cv2.rectangle(img, _pt((x0, y0), s), _pt((x1, y1), s), (255, 0, 255), 1, cv2.LINE_AA, shift=4)
    tags = [k for k, v in b.tags.items() if bool(v[i])]
    cv2.putText(img, f"#{int(b.index[i])} " + " ".join(tags), (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, f"#{int(b.index[i])} " + " ".join(tags), (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    # crops row: left hand, right hand, face, keypoints mapped into each crop
    cw = width // 3
    crops = []
    for h in range(2):
        c = _bgr(b.hand_crop[i, h])
        box = b.hand_box[i, h].cpu().numpy()
        z = c.shape[1] / (box[2] - box[0])
        pts = (b.hand_2d[i, h].cpu().numpy() - box[:2]) * z
        _lines(c, pts, HAND_EDGES, _HAND_COLOURS[h], 1.0, 2)
        _points(c, pts, b.hand_vis[i, h].cpu().numpy(), _HAND_COLOURS[h], 1.0, 3)
        crops.append(cv2.resize(c, (cw, cw), interpolation=cv2.INTER_AREA))
    c = _bgr(b.face_crop[i])
    box = b.face_crop_box[i].cpu().numpy()
    pts = (b.face_68[i].cpu().numpy() - box[:2]) * (c.shape[1] / (box[2] - box[0]))
    _points(c, pts, b.face_68_vis[i].cpu().numpy(), (255, 0, 255), 1.0, 2)
    crops.append(cv2.resize(c, (width - 2 * cw, cw), interpolation=cv2.INTER_AREA))
    return np.concatenate([img, np.concatenate(crops, 1)], 0)


def grid(b: SynthBatch, columns: int = 4, width: int = 384) -> np.ndarray:
    """All samples of ``b`` drawn by :func:`draw_sample` in a grid ``columns`` wide (BGR uint8)."""
    tiles = [draw_sample(b, i, width) for i in range(len(b))]
    h = tiles[0].shape[0]
    rows = []
    for r in range(0, len(tiles), columns):
        row = tiles[r:r + columns]
        row += [np.zeros_like(tiles[0])] * (columns - len(row))
        rows.append(np.concatenate(row, 1))
    del h
    return np.concatenate(rows, 0)
