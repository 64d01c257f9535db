"""``DetNetDetector``: the :class:`~model_runtime.detectors.base.Detector` backend ``detnet``.

DetNet gives body (24 keypoints, 2D + 3D), both hands (21 each, 2D + 3D) and the face box.  The
468 face-mesh landmarks the face stage needs are not a DetNet output, so by default this is a
composite: MediaPipe Face Mesh (bundled in the mediapipe wheel) runs on the crop of DetNet's face
box (``face="mediapipe"``; ``face="none"`` leaves ``face_landmarks`` empty and keeps only the box).

The frame is letterboxed (centred, zero border) into the network's square input; every output is
mapped back to px of the frame.  On CUDA inference runs under fp16 autocast; :meth:`detect_batch`
runs several frames in one forward pass.

Hand-only crops (:meth:`detect_hand`) are zero-padded into the input as in Fig. 6 and run with the
attention channel 0 (body-features invalid), as in training.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..base import NUM_WHOLEBODY_KEYPOINTS, Detection, HandDetection
from ...core.skeleton import BODY_KEYPOINT_NAMES
from ...face.landmarks import MP468_TO_IBUG68

log = logging.getLogger(__name__)

_WB_BODY = [BODY_KEYPOINT_NAMES.index(n) for n in (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle")]
_WB_FEET = [BODY_KEYPOINT_NAMES.index(n) if n else -1 for n in (
    "left_big_toe", None, "left_heel", "right_big_toe", None, "right_heel")]
_HIPS = (BODY_KEYPOINT_NAMES.index("left_hip"), BODY_KEYPOINT_NAMES.index("right_hip"))
COCO_HIP_WIDEN = 1.0 / 0.65
"""COCO hips (surface points) lie ~1/0.65 further apart than SMPL hip joints (see the MediaPipe backend)."""


def square_crop(image_bgr: np.ndarray, centre: np.ndarray, side: float, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """The square of ``side`` px around ``centre`` (frame px) resized to ``size``: ``(size, size, 3)`` RGB
    uint8 (zeros outside the frame), scale, offset ``(2,)`` with ``net_px = frame_px * scale + offset``."""
    import cv2

    s = size / side
    off = size / 2 - s * np.asarray(centre, np.float64)
    M = np.array([[s, 0, off[0] + 0.5 * s - 0.5], [0, s, off[1] + 0.5 * s - 0.5]])   # corner-origin affine in cv2 form
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    out = cv2.warpAffine(rgb, M, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out, s, off


def letterbox(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """The whole frame centred in a ``size`` square (see :func:`square_crop`)."""
    h, w = image_bgr.shape[:2]
    return square_crop(image_bgr, np.array([w / 2, h / 2]), float(max(h, w)), size)


def person_box(body_2d: np.ndarray, min_conf: float = 0.2, scale: float = 1.5) -> tuple[np.ndarray, float] | None:
    """Square around the confident body keypoints ``(24, 3)``: centre ``(2,)``, side px; None if < 4 points."""
    pts = body_2d[body_2d[:, 2] >= min_conf, :2]
    if len(pts) < 4:
        return None
    lo, hi = pts.min(0), pts.max(0)
    return (lo + hi) / 2, float(max(hi - lo) * scale + 16.0)


class DetNetDetector:
    """DetNet backend (see module docstring).

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        weights: weights file (default: the shipped ``weights/detnet_small.pt``).
        face: ``"mediapipe"`` (composite, face mesh on DetNet's face crop) or ``"none"``.
        hand_threshold: a hand is reported when its heat-map peak reaches this.
        face_threshold: the face box is reported when H_f's peak reaches this.
        person_threshold: a person is reported when the mean basic-keypoint confidence reaches this.
        two_pass: after a pass on the whole (letterboxed) frame, run again on the square around the
            person found (training crops look like that); in video mode (``timestamp_ms`` given) the
            previous frame's person square is used instead of the first pass.
        jit: on CPU, run network + decode as a traced and frozen TorchScript graph (one per batch size,
            traced on first use, ~0.3 s). The graph runs without Python's GIL, so the capture's fitting
            thread (Python, numpy) no longer stalls the detector between layers: tennis, detect 25.5 ->
            ~11 ms a frame in the pipeline (docs/detnet.md, "Session 11"); outputs equal the eager
            network's to 2e-5. CUDA keeps the eager fp16-autocast path. ``torch.jit`` is deprecated in the
            pinned torch 2.13 but works; where tracing fails the detector logs one line and runs eagerly.
    Raises:
        ModelFileError: the weights file is missing or malformed (one line naming file and field).
    """

    name = "detnet"

    def __init__(self, device: str = "cpu", weights: str | Path | None = None, face: str = "mediapipe",
                 hand_threshold: float = 0.3, face_threshold: float = 0.3, person_threshold: float = 0.15,
                 two_pass: bool = True, jit: bool = True):
        import torch

        from .weights import DEFAULT_WEIGHTS, load_weights

        if face not in ("mediapipe", "none"):
            raise ValueError(f"face must be 'mediapipe' or 'none', got {face!r}")
        self.device = device
        self.net, self.meta = load_weights(Path(weights) if weights else DEFAULT_WEIGHTS, device)
        self.config = self.net.config
        self.face_mode = face
        self.hand_threshold, self.face_threshold, self.person_threshold = hand_threshold, face_threshold, person_threshold
        self.two_pass = two_pass
        self._track: tuple[np.ndarray, float] | None = None
        self._face_mesh = None
        self._torch = torch
        self._closed = False
        self.jit = bool(jit) and str(device) == "cpu"
        self._traced: dict[int, object] = {}

    # -- network --
    def _run(self, batch_rgb: np.ndarray, attention: float = 1.0):
        from .decode import decode

        torch = self._torch
        if self._closed:
            raise RuntimeError("DetNetDetector is closed")
        x = torch.from_numpy(batch_rgb).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        att = torch.full((x.shape[0],), attention, device=x.device)
        graph = self._traced.get(x.shape[0]) if self.jit else None
        if self.jit and graph is None:
            graph = self._trace(x, att)
        if graph is not None:
            with torch.inference_mode():
                d = graph(x, att)
            return [t.float().numpy() for t in d]
        amp = str(self.device).startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = self.net(x, att)
            d = decode(out, self.config)
        return [t.float().cpu().numpy() for t in d]

    def _trace(self, x, att):
        """Trace and freeze network + decode for batch size ``x.shape[0]`` (see ``jit``)."""
        import warnings

        from .decode import decode

        torch, net, config = self._torch, self.net, self.config

        class _NetDecode(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, image, attention):
                return tuple(decode(self.net(image, attention), config))

        try:
            with warnings.catch_warnings(), torch.no_grad():
                # TracerWarnings (shapes are fixed per batch size, by design) and torch 2.13's deprecation
                # notice of torch.jit (the pinned torch has it; a torch without it falls back below)
                warnings.simplefilter("ignore")
                graph = torch.jit.freeze(torch.jit.trace(_NetDecode().eval(), (x, att), check_trace=False))
        except Exception as e:  # noqa: BLE001 - any tracing failure: the eager network gives the same output
            log.warning("DetNet: no traced CPU graph (%s: %s); running the eager network", type(e).__name__, e)
            self.jit = False
            return None
        self._traced[x.shape[0]] = graph
        return graph

    def _detect_views(self, images_bgr, views) -> list[Detection]:
        """One forward pass over ``views[i] = (centre, side)`` squares (None: the letterboxed frame)."""
        S = self.config.input_size
        boxed = [letterbox(im, S) if v is None else square_crop(im, v[0], v[1], S) for im, v in zip(images_bgr, views)]
        dec = self._run(np.stack([b[0] for b in boxed]))
        return [self._to_detection(im, [a[i] for a in dec], s, off)
                for i, (im, (_, s, off)) in enumerate(zip(images_bgr, boxed))]

    def detect_batch(self, images_bgr: Sequence[np.ndarray], views=None) -> list[Detection]:
        """Independent frames in one forward pass per stage (the face mesh still runs per frame).

        ``views``: per frame a ``(centre, side)`` square to look at first (None: the whole frame).
        """
        from ..mediapipe import _check_image

        for im in images_bgr:
            _check_image(im)
        views = list(views) if views is not None else [None] * len(images_bgr)
        dets = self._detect_views(images_bgr, views)
        if not self.two_pass:
            return dets
        again = [i for i, d in enumerate(dets) if views[i] is None and d.person and person_box(d.body_2d)]
        if again:
            for i, d in zip(again, self._detect_views([images_bgr[i] for i in again],
                                                      [person_box(dets[i].body_2d) for i in again])):
                dets[i] = d if d.person else dets[i]
        return dets

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int | None = None) -> Detection:
        """See :meth:`model_runtime.detectors.base.Detector.detect`; in video mode the previous frame's
        person square is looked at first (one pass), falling back to the whole frame."""
        if timestamp_ms is None or not self.two_pass:
            return self.detect_batch([image_bgr])[0]
        det = self.detect_batch([image_bgr], [self._track])[0] if self._track is not None else None
        if det is None or not det.person:
            det = self.detect_batch([image_bgr])[0]
        self._track = person_box(det.body_2d) if det.person else None
        return det

    def _to_detection(self, image_bgr, d, s: float, off: np.ndarray) -> Detection:
        body_xy, body_conf, body_3d, hand_xy, hand_conf, hand_3d, hand_score, face_box, face_score, _ = d
        h, w = image_bgr.shape[:2]
        det = Detection.empty((w, h))
        back = lambda p: (p - off) / s  # noqa: E731
        conf = body_conf.copy()
        inside = lambda p: (p[..., 0] >= 0) & (p[..., 0] < w) & (p[..., 1] >= 0) & (p[..., 1] < h)  # noqa: E731
        bxy = back(body_xy)
        conf[~inside(bxy)] *= 0.5
        det.person = bool(conf[:15].mean() >= self.person_threshold)
        if not det.person:
            return det
        det.body_2d = np.concatenate([bxy, conf[:, None]], 1).astype(np.float32)
        det.body_3d = body_3d.astype(np.float32)
        wb = det.wholebody_2d
        wb[:17] = det.body_2d[_WB_BODY]
        lh, rh = det.body_2d[_HIPS[0], :2], det.body_2d[_HIPS[1], :2]
        mid, half = (lh + rh) / 2, (lh - rh) / 2 * COCO_HIP_WIDEN
        wb[11, :2], wb[12, :2] = mid + half, mid - half
        feet = det.body_2d[np.maximum(_WB_FEET, 0)]
        wb[17:23] = np.where((np.array(_WB_FEET) >= 0)[:, None], feet, 0.0)
        for side in range(2):
            if hand_score[side] < self.hand_threshold:
                continue
            det.hands_2d[side] = np.concatenate([back(hand_xy[side]), hand_conf[side][:, None]], 1)
            det.hands_3d[side] = hand_3d[side]
            det.hands_conf[side] = float(hand_score[side])
            wb[91 + 21 * side:112 + 21 * side] = det.hands_2d[side]
        if face_score >= self.face_threshold:
            x0, y0 = back(face_box[:2])
            det.face_box = np.array([x0, y0, face_box[2] / s, face_box[3] / s], np.float32)
            det.face_conf = float(face_score)
            if self.face_mode == "mediapipe":
                mesh = self._face_landmarks(image_bgr, det.face_box)
                if mesh is None:
                    det.face_conf = 0.0
                else:
                    det.face_landmarks = mesh
                    lo, hi = mesh[:, :2].min(0), mesh[:, :2].max(0)
                    det.face_box = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32)
                    wb[23:91] = np.concatenate([mesh[MP468_TO_IBUG68, :2], np.ones((68, 1), np.float32)], 1)
        det.extras["hand_boxes_net_px"] = d[-1]
        return det

    def _face_landmarks(self, image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """MediaPipe Face Mesh on a square crop twice the face box: ``(468, 3)`` px of the frame or None."""
        import cv2

        if self._face_mesh is None:
            import mediapipe as mp

            self._face_mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                              refine_landmarks=False)
        h, w = image_bgr.shape[:2]
        side = max(box[2], box[3]) * 2.0
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        res = self._face_mesh.process(cv2.cvtColor(image_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2RGB))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        cw, ch = x1 - x0, y1 - y0
        pts = np.array([(p.x * cw + x0, p.y * ch + y0, p.z * cw) for p in lm[:468]], np.float32)
        return pts

    def detect_hand(self, image_bgr: np.ndarray, side_hint: str | None = None) -> HandDetection | None:
        """One hand in a hand-only crop: zero-padded into the input (Fig. 6), attention channel 0."""
        import cv2

        from ..mediapipe import _check_image

        _check_image(image_bgr)
        if side_hint not in (None, "left", "right"):
            raise ValueError(f"side_hint must be 'left', 'right' or None, got {side_hint!r}")
        S = self.config.input_size
        h, w = image_bgr.shape[:2]
        s = 0.4 * S / max(h, w)                       # the placement of data.sample_transform without augmentation
        off = np.array([S / 2 - s * w / 2, S / 2 - s * h / 2])
        M = np.array([[s, 0, off[0] + 0.5 * s - 0.5], [0, s, off[1] + 0.5 * s - 0.5]])
        canvas = cv2.warpAffine(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), M, (S, S), flags=cv2.INTER_AREA)
        d = self._run(canvas[None], attention=0.0)
        hand_xy, hand_conf, hand_3d, hand_score = d[3][0], d[4][0], d[5][0], d[6][0]
        side = {"left": 0, "right": 1}.get(side_hint, int(np.argmax(hand_score)))
        if hand_score[side] < self.hand_threshold:
            return None
        xy = (hand_xy[side] - off) / s
        return HandDetection(side=("left", "right")[side],
                             keypoints_2d=np.concatenate([xy, hand_conf[side][:, None]], 1).astype(np.float32),
                             keypoints_3d=hand_3d[side].astype(np.float32), confidence=float(hand_score[side]))

    def reset(self) -> None:
        """Forget the previous frame's person square (video mode)."""
        self._track = None

    def close(self) -> None:
        if self._face_mesh is not None:
            self._face_mesh.close()
            self._face_mesh = None
        self._traced.clear()
        self._closed = True

    def __enter__(self) -> "DetNetDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
