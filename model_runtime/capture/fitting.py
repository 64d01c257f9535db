"""Per-frame fitting: a detection becomes a :class:`FrameRecord` (hand sides corrected, non-finite
points dropped), then BodyIKNet and HandIKNet give its joint rotations (:class:`IKFitter`)."""
from __future__ import annotations

import logging
from typing import Any, Final, Mapping, Protocol

import numpy as np

from ..core import rotations
from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES, JOINT_NAMES, NUM_BODY_JOINTS, NUM_HAND_JOINTS, PARENTS
from ..detectors.base import Detection
from .records import FrameRecord
from .sources import Frame
from .tracking import HandSideTracker, ShapeEstimator
from .visibility import (
    KeypointHysteresis, UnseenBlender, gated_confidence, joint_confidence, joint_seen, keypoint_visibility, usable
)

log = logging.getLogger(__name__)

#: a frame counts as "person found" when at least MIN_CONFIDENT_KEYPOINTS body keypoints reach
#: MIN_BODY_CONFIDENCE (6 of 24: a talking head shows only its head keypoints, and that is enough)
MIN_BODY_CONFIDENCE: Final[float] = 0.5
MIN_CONFIDENT_KEYPOINTS: Final[int] = 6


def _chain_to_root(j: int) -> list[int]:
    out = [j]
    while PARENTS[out[-1]] >= 0:
        out.append(int(PARENTS[out[-1]]))
    return out[::-1]


#: joints from the pelvis down to each elbow, ``(2, 7)`` [left, right]
_ELBOW_CHAINS = np.array([_chain_to_root(JOINT_NAMES.index(f"{side}_elbow")) for side in ("left", "right")])
_WRISTS = np.array([JOINT_NAMES.index("left_wrist"), JOINT_NAMES.index("right_wrist")])
_NB = len(BODY_KEYPOINT_NAMES)
#: the joints whose rotation comes from the hands: wrists and fingers
_HAND_JOINTS = np.r_[_WRISTS, np.arange(NUM_BODY_JOINTS, NUM_BODY_JOINTS + 2 * NUM_HAND_JOINTS)]
_HAND_WRIST_ROWS = np.array([_NB, _NB + len(HAND21_NAMES)])   # keypoint rows of the hands' wrists [left, right]


class IKStage(Protocol):
    """BodyIKNet + HandIKNet (:mod:`model_runtime.ik.inference`).  Inputs in camera axes."""

    def solve_body(self, kp3d, conf) -> Mapping[str, Any]:
        """``kp3d (B, 24, 3)``, ``conf (B, 24)`` -> ``rot6d (B, 22, 6)``, ``betas (B, 16)``, ``scale (B,)``."""

    def solve_hands_full(self, kp3d, conf) -> Mapping[str, Any]:
        """``kp3d (B, 2, 21, 3)``, ``conf (B, 2, 21)`` -> ``rot6d (B, 2, 15, 6)`` fingers and
        ``wrist_global (B, 2, 3, 3)`` (each wrist's rotation in the keypoints' frame)."""


def finite_keypoints(p2d: np.ndarray, p3d: np.ndarray, index: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Detector points ``(..., N, 3)`` 2D (x, y, conf) and 3D: rows with a NaN/inf become unseen
    (zeros, confidence 0), so nothing non-finite reaches the fit."""
    ok = np.isfinite(p2d).all(-1) & np.isfinite(p3d).all(-1)
    if ok.all():
        return p2d, p3d
    log.warning("frame %d: %d %s keypoint(s) with non-finite values treated as unseen", index, int((~ok).sum()), what)
    return np.where(ok[..., None], p2d, 0.0), np.where(ok[..., None], p3d, 0.0)


def frame_record(frame: Frame, det: Detection, t_read: float, hands: HandSideTracker,
                 num_expressions: int) -> FrameRecord:
    """The record of one detected frame: finite keypoints, hands on the person's sides
    (``hands`` tracks them across frames), ``valid`` when enough body keypoints are confident."""
    body_2d, body_3d = finite_keypoints(det.body_2d, det.body_3d, frame.index, "body")
    hands_2d, hands_3d = finite_keypoints(det.hands_2d, det.hands_3d, frame.index, "hand")
    hands_conf = np.where(np.isfinite(det.hands_conf), det.hands_conf, 0.0)
    h2, h3, hc, _ = hands(body_2d, hands_2d, hands_3d, hands_conf)
    confident = int((body_2d[:, 2] >= MIN_BODY_CONFIDENCE).sum())
    valid = bool(det.person) and confident >= MIN_CONFIDENT_KEYPOINTS
    return FrameRecord(index=frame.index, time=frame.time, t_read=t_read, valid=valid, body_2d=body_2d,
                       body_3d=body_3d, hands_2d=h2, hands_3d=h3, hands_conf=hc,
                       expression=np.zeros(num_expressions), image_size=tuple(det.image_size))


def _hands_seen(rec: FrameRecord) -> np.ndarray:
    """``(2,)`` [left, right]: the hand was detected and its wrist keypoint is seen."""
    return (rec.hands_conf > 0) & (rec.ik_conf[_HAND_WRIST_ROWS] > 0)


def _np(x) -> np.ndarray:
    """torch tensor or array -> numpy array (detached, on the CPU)."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class IKFitter:
    """Joint rotations of a batch of records (:meth:`fit`), per clip: feeds the per-frame shape
    to ``shape`` and holds each hand's fingers while the hand is not seen.  Only seen keypoints
    reach the IK, and unseen joints are held or neutral (:mod:`.visibility`).

    Args:
        ik: the IK networks.
        shape: the clip's shape estimator (per-frame betas and scale go in).
        hands: fit the wrists and fingers (HandIKNet); False leaves them unseen (neutral pose).
    """

    def __init__(self, ik: IKStage, shape: ShapeEstimator, hands: bool):
        self.ik, self.shape, self.hands = ik, shape, hands
        self._last_hand_rot = np.tile(np.eye(3), (2, NUM_HAND_JOINTS, 1, 1))   # (2, 15, 3, 3)
        self._last_wrist_rot = np.tile(np.eye(3), (2, 1, 1))                    # (2, 3, 3) from the hands
        self.valid_frames = 0
        self.keypoints_seen = KeypointHysteresis()
        self.unseen = UnseenBlender()

    def fit(self, recs: list[FrameRecord]) -> None:
        """BodyIKNet and HandIKNet for the valid records, one batch each; fills ``rec.rot``.
        A record whose IK is not finite becomes invalid (gap-filled)."""
        if not recs:
            return
        kp = np.stack([np.concatenate([r.body_2d, r.hands_2d.reshape(-1, 3)]) for r in recs])      # (B, 66, 3)
        vis = keypoint_visibility(kp, recs[0].image_size)
        for r, v in zip(recs, vis):
            r.keypoint_visibility = v
        ok = np.array([r.valid for r in recs])
        if not ok.any():
            return
        valid = [r for r in recs if r.valid]
        vis = vis[ok]
        seen = self.keypoints_seen(vis)
        use = usable(vis, seen)
        conf = gated_confidence(kp[ok, :, 2], use)
        for r, c in zip(valid, conf):
            r.ik_conf = c
        joint_conf, jseen = joint_confidence(vis, use), joint_seen(seen)                          # (B, 52)
        if not self.hands:             # wrists and fingers are then not fitted: never seen
            joint_conf[:, _HAND_JOINTS], jseen[:, _HAND_JOINTS] = 0.0, False
        body = self.ik.solve_body(np.stack([r.body_3d for r in valid]), conf[:, :_NB])
        rot_body = rotations.rot6d_to_matrix(_np(body["rot6d"]).astype(np.float64))   # (B, 22, 3, 3)
        betas, scale = _np(body["betas"]), _np(body["scale"]).reshape(-1)
        for i, r in enumerate(valid):
            if not (np.isfinite(rot_body[i]).all() and np.isfinite(betas[i]).all() and np.isfinite(scale[i])):
                log.warning("frame %d: the body IK gave non-finite values; marked invalid and filled", r.index)
                r.valid = False
                continue
            r.rot[:NUM_BODY_JOINTS] = rot_body[i]
            self.shape.add(betas[i], float(scale[i]), weight=float(r.ik_conf[:_NB].mean()), index=r.index)
        fitted = np.array([r.valid for r in valid])
        valid, joint_conf, jseen = [r for r in valid if r.valid], joint_conf[fitted], jseen[fitted]
        with_hands = [r for r in valid if _hands_seen(r).any()] if self.hands else []
        if with_hands:
            self._fit_hands(with_hands)
        for r in valid:      # a hand not seen on this frame holds its wrist and fingers
            got = np.zeros(2, bool)
            if r.hand_rot is not None:
                got = _hands_seen(r) & np.isfinite(r.hand_rot).all(axis=(1, 2, 3))
                self._last_hand_rot = np.where(got[:, None, None, None], r.hand_rot, self._last_hand_rot)
                r.hand_rot = None
            self._last_wrist_rot = np.where(got[:, None, None], r.rot[_WRISTS], self._last_wrist_rot)
            r.rot[_WRISTS] = self._last_wrist_rot
            r.rot[NUM_BODY_JOINTS:] = self._last_hand_rot.reshape(2 * NUM_HAND_JOINTS, 3, 3)
        self._replace_unseen(valid, joint_conf, jseen)
        self.valid_frames += len(valid)

    def _replace_unseen(self, recs: list[FrameRecord], joint_conf: np.ndarray, seen: np.ndarray) -> None:
        """Unseen joints held or neutral (:class:`.visibility.UnseenBlender`); sets ``rot``,
        ``joint_confidence`` and ``joint_source`` of the fitted records."""
        if not recs:
            return
        rot, weight, source = self.unseen(np.stack([r.rot for r in recs]), seen, [r.time for r in recs],
                                          fresh=joint_conf > 0)
        conf = (weight * joint_conf).astype(np.float32)
        for i, r in enumerate(recs):
            r.rot, r.joint_confidence, r.joint_source = rot[i], conf[i], source[i]

    def _fit_hands(self, recs: list[FrameRecord]) -> None:
        """HandIKNet for records with a detected hand: finger rotations (``rec.hand_rot``
        ``(2, 15, 3, 3)``) and the wrists' rotation from the hand's own orientation, relative to the
        body's elbow, instead of the body net's guess (``rec.rot`` updated in place)."""
        full = self.ik.solve_hands_full(np.stack([r.hands_3d for r in recs]),
                                        np.stack([r.ik_conf[_NB:].reshape(2, -1) for r in recs]))
        fingers = rotations.rot6d_to_matrix(_np(full["rot6d"]).astype(np.float64))   # (B, 2, 15, 3, 3)
        wrist_global = _np(full["wrist_global"]).astype(np.float64)                  # (B, 2, 3, 3)
        rot = np.stack([r.rot for r in recs])                                        # (B, 52, 3, 3)
        # global rotations of the elbows (the wrists' parents): product down both arm chains at once
        chain = rot[:, _ELBOW_CHAINS]                                                # (B, 2, 7, 3, 3)
        elbow = chain[:, :, 0]
        for k in range(1, chain.shape[2]):
            elbow = elbow @ chain[:, :, k]
        rel = np.swapaxes(elbow, -1, -2) @ wrist_global                              # (B, 2, 3, 3)
        for i, r in enumerate(recs):
            seen = _hands_seen(r) & np.isfinite(rel[i]).all(axis=(1, 2))
            r.rot[_WRISTS] = np.where(seen[:, None, None], rel[i], r.rot[_WRISTS])
            r.hand_rot = fingers[i]

