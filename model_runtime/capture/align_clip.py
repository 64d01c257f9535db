"""The image-aligned fit of one clip (issue 10): :class:`ClipAlignment` runs :mod:`.align`'s
:class:`~.align.ImageAligner` on the capture's records in file order, links consecutive batches
by the temporal prior, calibrates the clip on its first frames (focal estimate of :mod:`.focal`,
the clip's beta fitted to the image by :mod:`.shape_fit`, depth anchoring) and smooths the result without lag (:class:`CentredSmoother`) or, live, causally
(:func:`live_fit_smoothing`)."""
from __future__ import annotations

import logging
import math
from collections import deque
from typing import Final

import numpy as np

from ..core.options import SmoothingConfig
from ..core.streams import HeldStream
from ..core.rotations import matrix_to_quat_wxyz, quat_wxyz_to_matrix
from ..core.skeleton import BODY_KEYPOINT_NAMES, NUM_JOINTS
from ..models.keypoints import NUM_BODY_KP
from .align import AlignConfig, ImageAligner, ModelKeypoints
from .filters import OneEuroFilter, RotationFilter, slerp
from .focal import MAX_FRAMES, ClipCamera, FocalEstimate, estimate_focal
from .scene_focal import SceneFocal, SceneFocalSampler, combine_frames, frame_focal, horizon_up, person_box
from .shape_fit import ShapeFit, ShapeFitConfig, fit_clip_shape
from .translation import TranslationSolver
from .visibility import (ARM_JOINTS, BLEND_S, SOURCE_HELD, fit_confidence, mark_reached, reach_joints,
                         release_weights)

log = logging.getLogger(__name__)

#: calibration (:meth:`ClipAlignment.calibrate`): at least this many frames; the depth anchoring
#: rescales alpha by at most this factor
MIN_CALIBRATION_FRAMES: Final[int] = 5
_TORSO_ROWS: Final[np.ndarray] = np.array([BODY_KEYPOINT_NAMES.index(n) for n in
                                           ("left_shoulder", "right_shoulder", "left_hip", "right_hip")])
ANCHOR_FRAMES: Final[int] = 12
MAX_DEPTH_RATIO: Final[float] = 1.25
#: offline, the fit runs on batches of at least this many valid frames (numpy's per-call overhead:
#: one frame at a time costs twice as much per frame; larger batches are cheaper still, but the
#: temporal links inside a batch converge in fewer steps than across batches, which shows as
#: jitter on a still talking head from 8 on)
ALIGN_BATCH: Final[int] = 4
#: :class:`CentredSmoother`: at most this many frames on each side
MAX_HALF_WINDOW: Final[int] = 6
#: live post-fit filter: the capture's One Euro cut-off and speed coefficient times this.  Tennis /
#: openpose live (docs/fidelity.md): unfiltered 2.5 / 2.7 px body median, jitter 77 / 128 mm/frame^2;
#: x1 8.8 / 12.3 px, 22 / 27; x2 (3 Hz, beta 0.6) in between; offline 3.7 / 5.5 px, 20 / 17
LIVE_FIT_SPEEDUP: Final[float] = 2.0


def live_fit_smoothing(config: SmoothingConfig) -> SmoothingConfig:
    """The One Euro parameters of the live post-fit filter: the capture's, :data:`LIVE_FIT_SPEEDUP`
    times faster (cut-off and speed coefficient; the slider's scale, ``SmoothingConfig.from_strength``):
    the frames were filtered once before the fit already, this only takes out what the fit puts
    back.  At the default 3 Hz, beta 0.6."""
    return SmoothingConfig(min_cutoff=config.min_cutoff * LIVE_FIT_SPEEDUP, beta=config.beta * LIVE_FIT_SPEEDUP,
                           d_cutoff=config.d_cutoff, enabled=config.enabled)


class ClipAlignment:
    """The image-aligned fit of one clip's frames in file order (:meth:`refine`, batches of
    :class:`~.records.FrameRecord` after the filters), the temporal link between batches, and the
    clip's calibration on its first frames (:meth:`calibrate`: focal estimate, depth anchoring).

    Depth anchoring: the image fixes only the ratio of the person's size to her depth; the IK's
    scale alpha (from the detector's metric 3D) sets both.  Eq. 14 measures the depth on the
    torso bones, the aligned fit on all keypoints; they disagree by a few percent when the model's
    limbs are relatively longer or shorter than hers.  :meth:`calibrate` keeps Eq. 14's depth on
    average over the first frames and rescales alpha by the median ratio instead (the image is
    unchanged by a common scale of alpha and translation), so the aligned fit does not move the
    clip's depth.

    Args:
        keypoints: the body model's keypoints (shared by the clips of a pipeline).
        camera: the clip's :class:`~.focal.ClipCamera` (its ``K`` is updated by the estimate).
        config: weights and iterations.
        lookahead: offline (the centred smoother of the fit's result); False: live.
        smoothing: the capture's One Euro parameters; live, the fit's result is filtered again,
            causally, by :func:`live_fit_smoothing` of them (None or disabled: not filtered).
        shape_fit: the per-clip beta fit of :meth:`calibrate`, or None (the IK's beta is kept).
        scene: measure the scene's vanishing points (:meth:`offer_frame`, :mod:`.scene_focal`): its focal
            when the focal is to be estimated (``camera.pending``; the body's estimate is the fallback), and
            whatever the lens its vertical or horizon for the ground plane (:meth:`scene_up`).  Live, on
            the first frame (its focal only with the default camera).  ``scene_window``: the frames the
            calibration waits for (the shape window), over which the scene's frames are sampled.
    """

    def __init__(self, keypoints: ModelKeypoints, camera: ClipCamera, config: AlignConfig | None = None,
                 fps: float = 30.0, lookahead: bool = True, smoothing: SmoothingConfig | None = None,
                 shape_fit: ShapeFitConfig | None = ShapeFitConfig(), scene: bool = True, scene_window: int = 30):
        self.kp, self.camera = keypoints, camera
        # the scene's vanishing points (:mod:`.scene_focal`), sampled over the calibration window: its focal
        # when the focal is to be estimated, its vertical or horizon for the ground plane whatever the lens
        self.scene = SceneFocalSampler(fps, window_s=scene_window / max(float(fps), 1e-6)) \
            if scene and lookahead else None
        # live: the first frame is measured at once (no look-ahead; the focal must not change mid-capture)
        self._live_scene = bool(scene and not lookahead)
        self.scene_focal: SceneFocal | None = None
        self.shape_fit_config = shape_fit
        self.shape_fit: ShapeFit | None = None          # the result of the clip's beta fit
        self.aligner = ImageAligner(keypoints, camera.K, config)
        cfg = self.aligner.config
        self.smoother = CentredSmoother(fps, cfg.smoothing_s if lookahead else 0.0, cfg.smoothing_max_s,
                                        cfg.smoothing_speed, keypoints, camera)
        live = None if lookahead or smoothing is None or not smoothing.enabled else live_fit_smoothing(smoothing)
        self.live_filter = None if live is None else (RotationFilter(live), OneEuroFilter(live, group_last_axis=True))
        self.calibrating = True
        self.focal: FocalEstimate | None = None
        self.depth_ratio = 1.0
        self._shape: tuple[bytes, float] | None = None
        self._pending: list = []                        # records waiting for a batch (offline)
        # the last refined frame: index, correction of its rotations and of its translation
        self._prev: tuple[int, np.ndarray, np.ndarray] | None = None
        # per side: (frame index, arm quaternions (3, 4)) of the last frame whose arm reached a seen hand
        self._reached: dict[str, tuple[int, np.ndarray]] = {}
        self._release_frames = max(1, round(BLEND_S * fps))

    def _set_shape(self, betas: np.ndarray, scale: float) -> None:
        key = (np.asarray(betas, np.float64).tobytes(), float(scale))
        if key != self._shape:
            self.kp.set_shape(betas, scale)
            self._shape = key

    @staticmethod
    def _kp2d(recs) -> np.ndarray:
        """``(B, 66, 3)`` px with the confidences the IK used (``ik_conf``: 0 for unseen points)
        less the points whose model position is a guess (:func:`.visibility.fit_confidence`)."""
        kp = np.stack([np.concatenate([r.body_2d, r.hands_2d.reshape(-1, 3)]) for r in recs])
        kp[..., 2] = fit_confidence(np.stack([r.ik_conf for r in recs]), np.stack([r.keypoint_visibility for r in recs]),
                                    np.stack([r.joint_confidence for r in recs]))
        return kp

    @staticmethod
    def _kp3d(recs) -> np.ndarray:
        """``(B, 66, 3)`` the detector's 3D points: body (pelvis-relative), then each hand
        (wrist-relative), camera axes (the fit uses directions within the body and within a hand)."""
        return np.stack([np.concatenate([r.body_3d, r.hands_3d.reshape(-1, 3)]) for r in recs])

    def offer_frame(self, t: float, image_bgr, points) -> bool:
        """The frame at ``t`` s: its image and the person's 2D points ``(P, 3)`` (or None), in file order, for
        the scene's focal estimate (:class:`~.scene_focal.SceneFocalSampler`; nothing once calibrated).
        Live, the first frame with an image is measured at once (:func:`~.scene_focal.frame_focal`, ~50 ms)
        and its focal used from that frame on; -> whether ``camera.K`` changed (the caller's translation
        solver must take the new one)."""
        if self.scene is not None and self.calibrating:
            self.scene.offer(t, image_bgr, points)
        if not self._live_scene or image_bgr is None:
            return False
        self._live_scene = False
        H, W = image_bgr.shape[:2]
        box = person_box(points, (W, H)) if points is not None else None
        self.scene_focal = combine_frames([frame_focal(image_bgr, [box] if box else [])], image_height=float(H))
        if self.scene_focal.focal is None or self.camera.source != "default":     # a given lens stays
            return False
        self.camera.set_focal(self.scene_focal.focal, "scene")
        self.aligner.set_camera(self.camera.K)
        return True

    def scene_up(self) -> np.ndarray | None:
        """The scene's vertical in the camera frame: the measured one (:attr:`.scene_focal.SceneFocal.up`)
        when the clip's focal came from the scene; else the normal of the ground whose vanishing line is the
        scene's horizon (:attr:`~.scene_focal.SceneFocal.horizon`) under the clip's ``K``
        (:func:`~.scene_focal.horizon_up`); None without either."""
        sf = self.scene_focal
        if sf is None:
            return None
        if sf.focal is not None and self.camera.source == "scene" and sf.up is not None:
            return sf.up
        return None if sf.horizon is None else horizon_up(sf.horizon, self.camera.K)

    def close(self) -> None:
        """Stop the scene estimate's thread (a clip that ends before its calibration)."""
        if self.scene is not None:
            self.scene.close()

    def calibrate(self, recs, shape) -> bool:
        """Once per clip, on the first window's valid, translated records (IK rotations, Eq. 14
        translations): the focal when ``camera.pending`` (``camera.K``; source ``scene`` when the
        scene's vanishing points give it, else ``estimated`` from the body, or ``default`` when
        neither determines it), then on frames whose shoulders and hips
        are seen (none when fewer than :data:`MIN_CALIBRATION_FRAMES`; the scene's focal is used
        even then) the clip's beta
        (``shape.set_betas``, :func:`~.shape_fit.fit_clip_shape`) and the depth anchoring
        (``shape.rescale``).  Fewer than :data:`MIN_CALIBRATION_FRAMES` frames skip all but the scene's focal.
        Returns whether ``camera.K`` or the shape changed (joints and translations to solve again)."""
        self.calibrating, estimate = False, self.camera.pending
        self.camera.pending = False
        changed = False
        if self.scene is not None:                  # the scene needs no records: a single photo too
            self.scene_focal = self.scene.result()
            sf = self.scene_focal
            log.info("scene: focal %s (std of log f %.3f, %d of %d sampled frames), horizon %s",
                     "none" if sf.focal is None else f"{sf.focal:.0f} px", sf.log_std, sf.frames, len(sf.per_frame),
                     "none" if sf.horizon is None else f"y = -({sf.horizon[0]:.4f} x + {sf.horizon[2]:.1f})")
            if estimate and self.scene_focal.focal is not None:
                self.camera.set_focal(self.scene_focal.focal, "scene")
                self.aligner.set_camera(self.camera.K)
                changed, estimate = True, False
        recs = [r for r in recs if r.transl_ok][:shape.window]      # the shape's window: same frames, same result
        if len(recs) < MIN_CALIBRATION_FRAMES:
            return changed
        recs = recs[::max(1, -(-len(recs) // MAX_FRAMES))]
        self._set_shape(shape.betas, shape.scale)
        rot, kp2d = np.stack([r.rot for r in recs]), self._kp2d(recs)
        J, _, X = self.kp.pose(rot, np.stack([r.transl for r in recs]))
        if estimate:
            K = self.camera.K
            self.focal = estimate_focal(X[:, :NUM_BODY_KP], kp2d[:, :NUM_BODY_KP], K, (int(round(2 * K[0, 2])), int(round(2 * K[1, 2]))))
            if self.focal.focal is not None:
                self.camera.set_focal(self.focal.focal, "estimated")
                self.aligner.set_camera(self.camera.K)
                changed = True
        # anchoring: frames whose torso (shoulders and hips) is seen, so that Eq. 14 rests on it
        torso = np.nonzero((kp2d[:, _TORSO_ROWS, 2] >= 0.5).all(1))[0]
        sub = torso[::max(1, -(-len(torso) // ANCHOR_FRAMES))]
        if len(sub) < MIN_CALIBRATION_FRAMES:
            return changed
        t_eq, ok = self._eq14(rot[sub], kp2d[sub])
        if ok.sum() < MIN_CALIBRATION_FRAMES:
            return changed
        sub, t_eq = sub[ok], t_eq[ok]
        kp3d = self._kp3d([recs[i] for i in sub])
        if self.shape_fit_config is not None:
            # the anchoring keeps Eq. 14's depth with the IK's skeleton: a new beta changes the
            # skeleton's proportions, not the clip's depth (the image does not give its size)
            frozen = np.stack([recs[i].joint_confidence <= 0 for i in sub])
            fit = fit_clip_shape(self.aligner, rot[sub], t_eq, kp2d[sub], kp3d, shape.betas, shape.scale,
                                 self.shape_fit_config, frozen)
            self.shape_fit = fit
            if not np.array_equal(fit.betas, shape.betas):
                shape.set_betas(fit.betas)
                self._set_shape(shape.betas, shape.scale)
                changed = True
        res = self.aligner.fit(rot[sub], t_eq, kp2d[sub], kp3d)
        ratio = float(np.median(t_eq[:, 2] / res.transl[:, 2]))
        if np.isfinite(ratio) and abs(ratio - 1.0) > 1e-3:
            self.depth_ratio = float(np.clip(ratio, 1.0 / MAX_DEPTH_RATIO, MAX_DEPTH_RATIO))
            shape.rescale(self.depth_ratio)
            changed = True
        return changed

    def _eq14(self, rot: np.ndarray, kp2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eq. 14's translations ``(B, 3)`` and ``ok (B,)`` of rotations with the current shape."""
        J, _, _ = self.kp.pose(rot, np.zeros((len(rot), 3)))
        return TranslationSolver(self.camera.K).solve(kp2d[:, :NUM_BODY_KP], J)

    def push(self, recs) -> list:
        """The next records in file order (valid or not, filtered): refine the valid ones
        (:meth:`refine`, offline in batches of :data:`ALIGN_BATCH`) and smooth them
        (:class:`CentredSmoother`); -> the records whose smoothing window is complete (offline: up
        to ``ALIGN_BATCH + CentredSmoother.half`` frames later)."""
        self._pending += recs
        if self.smoother.half and sum(r.valid for r in self._pending) < ALIGN_BATCH:
            return []                               # offline: fit ALIGN_BATCH frames at once (cheaper)
        return self._posed(self._live_filtered(self.smoother.push(self._fit_pending())))

    def flush(self) -> list:
        """End of the clip: the records still held (fitted and smoothed)."""
        out = self.smoother.push(self._fit_pending(final=True))
        return self._posed(self._live_filtered(out + self.smoother.flush()))

    def _live_filtered(self, recs) -> list:
        """Live: the fit's rotations and translation through the causal One Euro filters (the fit
        pulls every frame onto that frame's detections, so without them a live capture jitters as
        much as the detector: tennis 77 against 20 mm/frame^2 offline, docs/fidelity.md)."""
        if self.live_filter is not None:
            rot_f, transl_f = self.live_filter
            for r in recs:
                if r.valid:
                    r.quat = rot_f.filter_quaternions(r.quat, r.time)
                    r.transl = transl_f(r.transl, r.time)
        return recs

    def _fit_pending(self, final: bool = False) -> list:
        """Refine the pending records and hand them on.  Offline the fit runs on fixed chunks of
        :data:`ALIGN_BATCH` valid frames (the rest waits for the next records, or ``final``), so the
        result does not depend on how the records arrived (the temporal links inside a batch and
        across batches converge differently)."""
        recs = self._pending
        pos = [i for i, r in enumerate(recs) if r.valid]
        if self.smoother.half and not final:
            n = len(pos) // ALIGN_BATCH * ALIGN_BATCH
            pos = pos[:n]
            recs = recs[:pos[-1] + 1] if n else []
        valid = [recs[i] for i in pos]
        self._pending = self._pending[len(recs):]
        step = ALIGN_BATCH if self.smoother.half else max(1, len(valid))
        for i in range(0, len(valid), step):
            self.refine(valid[i:i + step])
        return recs

    def _posed(self, recs) -> list:
        """``rec.joints`` of the smoothed rotations."""
        valid = [r for r in recs if r.valid and r.joints is not None]
        if valid:
            J, _, _ = self.kp.pose(quat_wxyz_to_matrix(np.stack([r.quat for r in valid])), np.zeros((len(valid), 3)))
            for r, j in zip(valid, J):
                r.joints = j
        return recs

    def refine(self, recs) -> None:
        """Refine valid, smoothed records in place: ``quat`` (WXYZ, sign kept continuous),
        ``transl`` and ``joints`` (the clip's shape must be set by :meth:`set_shape`)."""
        if not recs:
            return
        B = len(recs)
        idx = np.array([r.index for r in recs])
        breaks = np.array([bool(getattr(r, "track_break", False)) for r in recs])
        chain = np.concatenate([[False], np.diff(idx) == 1]) & ~breaks     # no temporal link to another person
        prev_rot = np.broadcast_to(np.eye(3), (B, NUM_JOINTS, 3, 3)).copy()
        prev_t = np.zeros((B, 3))
        prev_ok = np.zeros(B, bool)
        quat = np.stack([r.quat for r in recs])
        rot_in, t_in = quat_wxyz_to_matrix(quat), np.stack([r.transl for r in recs])
        if self._prev is not None and self._prev[0] == idx[0] - 1 and not breaks[0]:   # the last frame's correction, carried
            prev_rot[0], prev_t[0], prev_ok[0] = self._prev[1] @ rot_in[0], t_in[0] + self._prev[2], True
        jc = np.stack([r.joint_confidence for r in recs])
        reach = reach_joints(jc)
        res = self.aligner.fit(rot_in, t_in, self._kp2d(recs), self._kp3d(recs),
                               prev_rot, prev_t, prev_ok, chain,
                               frozen=(jc <= 0) & ~reach,        # unseen joints stay, but an arm reaches a seen hand
                               unsure=np.array([not r.transl_ok for r in recs]))
        q = matrix_to_quat_wxyz(res.rot)
        q = np.where((q * quat).sum(-1, keepdims=True) < 0, -q, q)
        joints = res.joints
        mask = self._release(q, idx, jc, reach, breaks)             # (B, 2): a released arm blended back
        released = mask.any(1)
        if released.any():                                          # those frames' posed joints again
            joints = joints.copy()
            joints[released] = self.aligner.kp.pose(quat_wxyz_to_matrix(q[released]),
                                                    np.zeros((int(released.sum()), 3)))[0]
        for i, r in enumerate(recs):
            r.quat, r.transl, r.joints = q[i], res.transl[i], joints[i]
            if reach[i].any():
                r.joint_confidence, r.joint_source = mark_reached(r.joint_confidence, r.joint_source, reach[i])
            if released[i]:
                r.joint_source = np.array(r.joint_source, copy=True)
                for k, side in enumerate(("left", "right")):
                    if mask[i, k]:
                        r.joint_source[ARM_JOINTS[side]] = SOURCE_HELD
        self._prev = (int(idx[-1]), res.rot[-1] @ np.swapaxes(rot_in[-1], -1, -2), res.transl[-1] - t_in[-1])

    def _release(self, q: np.ndarray, idx: np.ndarray, jc: np.ndarray, reach: np.ndarray,
                 breaks: np.ndarray | None = None) -> np.ndarray:
        """An arm that reached a seen hand (:func:`~.visibility.reach_joints`) and then loses it blends
        from its last reached pose to the pose it is given (the unseen arm's) over
        :data:`~.visibility.BLEND_S`, in place in ``q (B, 52, 4)``; -> ``(B, 2)`` bool, the
        (frame, side) pairs blended.  Frames in order; the state carries across calls, not across a
        ``breaks`` frame (a new track: the reach belonged to the other person)."""
        mask = np.zeros((len(q), 2), bool)
        for k, side in enumerate(("left", "right")):
            arm = ARM_JOINTS[side]
            for i in range(len(q)):
                if breaks is not None and breaks[i]:
                    self._reached.pop(side, None)
                if reach[i, arm].all():
                    self._reached[side] = (int(idx[i]), q[i, arm].copy())
                    continue
                last = self._reached.get(side)
                if last is None:
                    continue
                since = int(idx[i]) - last[0]
                if since > self._release_frames or (jc[i, arm] > 0).any():   # blended out, or seen again
                    del self._reached[side]
                    continue
                q[i, arm] = slerp(q[i, arm], last[1], release_weights(since, self._release_frames))
                mask[i, k] = True
        return mask

    def set_shape(self, betas: np.ndarray, scale: float) -> None:
        """The clip's current shape (betas, scale alpha)."""
        self._set_shape(betas, scale)


class CentredSmoother(HeldStream):
    """Zero-lag smoothing of the aligned frames: a centred Gaussian over time of each joint's
    rotation (quaternions sign-aligned and normalised) and of the translation, at most
    :data:`MAX_HALF_WINDOW` frames each side, over runs of consecutive valid frames; next to a gap
    or the clip's ends the window shrinks symmetrically (a frame next to one is kept as it is), so
    there is no lag anywhere.  The image-aligned fit follows the detector's 2D points, whose noise a
    causal filter could only remove with lag (tens of pixels on fast motion at 12 fps); offline,
    frames wait ``half`` frames for their successors.  ``sigma_s = 0`` (live) passes frames through.

    The standard deviation adapts to the motion: a joint whose keypoints (those it moves,
    ``keypoints.M``) move at speed ``v`` in the image (metres per second at the person's depth,
    from the neighbouring frames' detections) gets ``sigma_s + (sigma_max_s - sigma_s) /
    (1 + (v / speed)^2)``: still parts (a talking head's shoulders) are smoothed over ~0.1 s, a
    dribbling hand hardly at all.  The translation does the same with the median speed of all
    keypoints.  Without ``keypoints`` the standard deviation is ``sigma_s`` everywhere.
    """

    def __init__(self, fps: float, sigma_s: float, sigma_max_s: float | None = None, speed: float = 1.0,
                 keypoints: ModelKeypoints | None = None, camera: ClipCamera | None = None):
        self.fps, self.sigma, self.speed = float(fps), float(sigma_s), float(speed)
        self.sigma_max = self.sigma if sigma_max_s is None or keypoints is None else max(float(sigma_max_s), self.sigma)
        self.half = 0 if self.sigma <= 0 else min(MAX_HALF_WINDOW, max(1, math.ceil(2.5 * self.sigma_max * fps)))
        self.kp, self.camera = keypoints, camera
        super().__init__()
        self._past: deque = deque(maxlen=max(self.half, 1))   # (index, quat, transl, kp2d) before smoothing

    def _ready(self) -> bool:
        return len(self._held) > self.half

    @staticmethod
    def _kp2d(r) -> np.ndarray | None:
        if not hasattr(r, "body_2d"):
            return None
        kp = np.concatenate([r.body_2d, r.hands_2d.reshape(-1, 3)])
        kp[:, 2] = r.ik_conf
        return kp

    def _sigmas(self, r, prev: np.ndarray | None, nxt: np.ndarray | None) -> tuple[np.ndarray, float]:
        """Per-joint ``(52,)`` and translation standard deviations (seconds) of frame ``r``."""
        if self.sigma_max == self.sigma or prev is None or nxt is None:
            return np.full(len(r.quat), self.sigma), self.sigma
        c = np.minimum(prev[:, 2], nxt[:, 2])
        metres_per_px = max(float(r.transl[2]), 0.3) / float(self.camera.K[0, 0])
        v = np.linalg.norm(nxt[:, :2] - prev[:, :2], axis=-1) * (0.5 * self.fps * metres_per_px)   # (66,) m/s
        M = self.kp.M
        den = c @ M
        vj = np.where(den > 0, (c * v) @ M / np.maximum(den, 1e-12), 0.0)                 # (52,)
        vt = float(np.median(v[c > 0])) if (c > 0).any() else 0.0
        span = self.sigma_max - self.sigma
        return self.sigma + span / (1.0 + (vj / self.speed) ** 2), self.sigma + span / (1.0 + (vt / self.speed) ** 2)

    def _release(self):
        r = self._held.popleft()
        if getattr(r, "track_break", False):
            self._past.clear()                     # frames before a new track (another person) are not its past
        if self.half == 0 or not r.valid:
            if not r.valid:
                self._past.clear()
            return r
        q0, t0, kp0 = r.quat.copy(), r.transl.copy(), self._kp2d(r)
        before = []
        for k, (idx, q, t, kp) in enumerate(reversed(self._past)):          # earlier frames
            if idx != r.index - 1 - k:
                break
            before.append((q, t, kp))
        after = []
        for k, n in enumerate(list(self._held)[:self.half]):               # later frames
            if not n.valid or n.index != r.index + 1 + k or getattr(n, "track_break", False):
                break
            after.append((n.quat, n.transl, None))
        m = min(len(before), len(after))          # symmetric: no lag at a gap or the clip's ends either
        self._past.append((r.index, q0, t0, kp0))
        if m == 0:
            return r
        sig_j, sig_t = self._sigmas(r, before[0][2], self._kp2d(self._held[0]))
        offs = np.concatenate([[0], -1 - np.arange(m), 1 + np.arange(m)]).astype(np.float64)
        pairs = [(q0, t0)] + [p[:2] for p in before[:m]] + [p[:2] for p in after[:m]]
        w = np.exp(-0.5 * (offs[:, None] / (sig_j[None, :] * self.fps)) ** 2)          # (n, 52)
        w /= w.sum(0)
        wt = np.exp(-0.5 * (offs / (sig_t * self.fps)) ** 2)
        wt /= wt.sum()
        Q = np.stack([p[0] for p in pairs])                                   # (n, 52, 4)
        Q = np.where((Q * q0).sum(-1, keepdims=True) < 0, -Q, Q)
        q = (w[..., None] * Q).sum(0)
        r.quat = q / np.linalg.norm(q, axis=-1, keepdims=True)
        r.transl = (wt[:, None] * np.stack([p[1] for p in pairs])).sum(0)
        return r
