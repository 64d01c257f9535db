"""Post-processing of fitted frames, in file order: forward kinematics and the global translation
(Eq. 14), One Euro filters (rotations, translation, expressions), the image-aligned fit, foot
contacts and locking (:mod:`.feet`), gap filling (body and face)."""
from __future__ import annotations

from typing import Callable, Final

import numpy as np

from ..core import rotations
from ..core.lbs import forward_kinematics
from ..core.options import CaptureOptions, SmoothingConfig
from ..core.skeleton import NUM_JOINTS
from .align_clip import ClipAlignment
from .feet_stage import FootStage
from .filters import GapFiller, OneEuroFilter, RotationFilter
from .records import FrameRecord
from .tracking import ShapeEstimator
from .translation import TranslationSolver, eq14_confidence

#: One Euro for expressions: coefficient speeds are in units/s (not rad/s); a blink or a
#: syllable moves a coefficient by ~0.5 in ~0.1 s, so the cut-off must reach ~5 Hz while it
#: moves and the speed estimate must see the onset within a frame or two (docs/pipeline.md)
EXPRESSION_BETA: Final[float] = 1.0
EXPRESSION_D_CUTOFF: Final[float] = 4.0
#: depth (m) of a person whose translation could not be solved yet
DEFAULT_TRANSL: Final[tuple[float, float, float]] = (0.0, 0.0, 3.0)


def expression_smoothing(config: SmoothingConfig) -> SmoothingConfig:
    """The One Euro parameters of the expression coefficients from the capture's: the same
    ``min_cutoff`` (jitter of a still face) and on/off switch, :data:`EXPRESSION_BETA` and
    :data:`EXPRESSION_D_CUTOFF` for the speed (units/s of a coefficient, not rad/s)."""
    return SmoothingConfig(min_cutoff=config.min_cutoff, beta=EXPRESSION_BETA, d_cutoff=EXPRESSION_D_CUTOFF,
                           enabled=config.enabled)


def solve_translations_in_order(solver: TranslationSolver, kp2d: np.ndarray, joints: np.ndarray,
                                last_z: float | None, points: np.ndarray | None = None
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 14 for consecutive frames, each with the depth of the last solved frame before it as its
    prior (``last_z`` before the first; None: no prior): what solving them one after the other
    gives, in batched calls.

    kp2d ``(B, 24, 3)``, joints ``(B, 52, 3)``, points ``(B, 24, 3)`` or None (the model's keypoints,
    for the head bones: :meth:`TranslationSolver.solve`) -> ``transl (B, 3)``, ``ok (B,)`` (finite and solved).

    The prior only picks between two valid roots of a bone, so the batch is solved with guessed
    priors (first all ``last_z``, then the depths the previous pass gave each frame's predecessors)
    until the priors it implies are the ones it used: then every frame saw exactly the prior of the
    sequential loop.  Two calls for a batch of 4 instead of four (a call costs about the same for
    1 or 4 frames), one for a single frame, at most ``B``.
    """
    B = len(kp2d)
    start = np.nan if last_z is None else last_z          # a NaN prior prefers no root, as None does
    prior = np.full(B, start)
    for _ in range(B):
        t, ok = solver.solve(kp2d, joints, prior, points)
        ok = ok & np.isfinite(t).all(-1)
        # the prior of frame i: the depth of the last solved frame before it (forward fill)
        z = np.where(ok, t[:, 2], np.nan)
        last = np.maximum.accumulate(np.where(ok, np.arange(B), -1))                    # (B,) index or -1
        implied = np.concatenate([[start], np.where(last >= 0, z[np.maximum(last, 0)], start)[:-1]])
        if np.array_equal(implied, prior, equal_nan=True):
            break
        prior = implied
    return t, ok


class MotionPostprocessor:
    """Translation, filters and gap filling of one clip's frames (:meth:`push` in file order,
    :meth:`flush` at the end).

    Args:
        K: camera intrinsics ``(3, 3)``.
        shape: the clip's shape (betas and scale of the skeleton that is translated).
        rest_joints: ``betas (16,)`` -> rest joints ``(52, 3)`` of the body model.
        parents: ``(52,)`` the body model's joint parents.
        options: smoothing, fill mode, ``max_gap``.
        live: never wait for a future frame (gaps are held, not interpolated).
        face: fill the face gaps (frames without a tracked face) before the body gaps.
        align: the image-aligned fit of the filtered frames (:mod:`.align_clip`; it calibrates the
            clip on its first frames: focal estimate, depth anchoring), or None.
        feet: foot contacts, ground plane, planted feet locked (:class:`~.feet_stage.FootStage`), or None.
    """

    def __init__(self, K: np.ndarray, shape: ShapeEstimator, rest_joints: Callable[[np.ndarray], np.ndarray],
                 parents: np.ndarray, options: CaptureOptions, live: bool, face: bool,
                 align: ClipAlignment | None = None, feet: FootStage | None = None):
        o = options
        self.feet = feet
        self.shape, self.rest_joints, self.parents, self.face = shape, rest_joints, parents, face
        self.align = align
        self.translation = TranslationSolver(K)
        self.rot_filter = RotationFilter(o.smoothing)
        self.transl_filter = OneEuroFilter(o.smoothing, group_last_axis=True)
        self.expr_filter = OneEuroFilter(expression_smoothing(o.smoothing))
        # offline: the expression is smoothed without lag (centred, face/smoothing.py), not by the One Euro
        self.expr_centred = None
        if not live and face and o.smoothing.enabled:
            from ..face.smoothing import CentredExpressionSmoother, expression_sigma_s

            self.expr_centred = CentredExpressionSmoother(
                expression_sigma_s(o.smoothing.min_cutoff, SmoothingConfig().min_cutoff))
        # body gaps (no person) and face gaps (frames without a tracked face)
        self.body_gaps = GapFiller(o.fill, quat_keys=("quat",), linear_keys=("transl",), max_gap=o.max_gap,
                                   lookahead=not live)
        self.face_gaps = GapFiller("interpolate", linear_keys=("expression", "sh"), max_gap=o.max_gap,
                                   flag="face_ok", lookahead=not live)
        if feet is not None:      # a lock after a gap was filled fills it again
            feet.refill_gap = self.body_gaps.fill_gap
        self._last_transl: np.ndarray | None = None

    def push(self, recs: list[FrameRecord]) -> list[FrameRecord]:
        """Translate, smooth and gap-fill the next frames; -> the frames ready to write."""
        if not recs:
            return []
        valid = [r for r in recs if r.valid]
        self._translate(valid)
        for r in recs:
            self._smooth(r)
        if self.align is not None:                   # the filtered pose, aligned to the image
            self.align.set_shape(self.shape.betas, self.shape.scale)
            recs = self.align.push(recs)             # (offline: a few frames later, smoothed)
            if valid and valid[-1].transl_ok:
                self._last_transl = valid[-1].transl
        if self.feet is not None:                    # planted feet locked before the gaps are filled
            recs = self.feet.push(self._with_shape(recs))
        return self._centre_face(self._fill(recs))

    def calibrate_early(self, recs: list[FrameRecord]) -> None:
        """Offline: the clip's calibration on the shape window's held records ``recs`` before they are
        released (their keyframe face fits may still be running), so that it is not left for the
        moment they are.  Exactly what :meth:`push` does on its first records (Eq. 14 with the
        current shape, :meth:`.align_clip.ClipAlignment.calibrate`); the records' translations are
        solved again by :meth:`push`, from the same state, so the capture is the same."""
        if not (self.align is not None and self.align.calibrating and self.shape.frozen):
            return
        valid = [r for r in recs if r.valid]
        if not valid:
            return
        last = self._last_transl
        self._solve_translation(valid, *self._posed(np.stack([r.rot for r in valid])))
        self._calibrate(valid)
        self._last_transl = last

    def _calibrate(self, valid: list[FrameRecord]) -> bool:
        """The clip's calibration on the shape window's records among ``valid`` (translated with the
        current shape); -> whether the camera or the shape changed (``self.translation`` then uses the
        new camera and the translations must be solved again)."""
        end = self.shape.window_end
        if not self.align.calibrate([r for r in valid if end is None or r.index <= end], self.shape):
            return False
        self.translation = TranslationSolver(self.align.camera.K)
        return True

    def camera_changed(self) -> None:
        """The clip's camera got its focal before any frame was translated (live: the scene's, on the
        first frame, :meth:`.align_clip.ClipAlignment.offer_frame`): Eq. 14 uses the new ``K``."""
        self.translation = TranslationSolver(self.align.camera.K)

    @property
    def calibration_pending(self) -> bool:
        """Whether the clip's calibration (:meth:`.align_clip.ClipAlignment.calibrate`) has yet to run."""
        return self.align is not None and self.align.calibrating

    def _centre_face(self, recs: list[FrameRecord]) -> list[FrameRecord]:
        return recs if self.expr_centred is None else self.expr_centred.push(recs)

    def _with_shape(self, recs: list[FrameRecord]) -> list[FrameRecord]:
        for r in recs:
            r.betas, r.scale = self.shape.betas, self.shape.scale
        return recs

    def _fill(self, recs: list[FrameRecord]) -> list[FrameRecord]:
        """Gap filling (face, then body) of finished frames; -> the frames ready to write."""
        out: list[FrameRecord] = []
        betas, scale = self.shape.betas, self.shape.scale
        for r in recs:
            r.betas, r.scale = betas, scale
            if not self.face:
                out += self.body_gaps.push(r)
                continue
            for f in self.face_gaps.push(r):          # face gaps first (frames between fits) ...
                out += self.body_gaps.push(f)         # ... then body gaps
        return out

    def flush(self) -> list[FrameRecord]:
        """End of the clip: the frames held in gaps (trailing gaps are held)."""
        recs = self.align.flush() if self.align is not None else []
        if self.feet is not None:
            recs = self.feet.push(self._with_shape(recs)) + self.feet.flush()
        out = self._fill(recs)
        for rec in self.face_gaps.flush():
            out += self.body_gaps.push(rec)
        out = self._centre_face(out + self.body_gaps.flush())
        return out if self.expr_centred is None else out + self.expr_centred.flush()

    def _translate(self, valid: list[FrameRecord]) -> None:
        """Posed joints (``rec.joints``, scaled) and the translation (Eq. 14, ``rec.transl``; the
        last solved one where a frame has no solution)."""
        if not valid:
            return
        rots = np.stack([r.rot for r in valid])                                          # (B, 52, 3, 3)
        last = self._last_transl
        self._solve_translation(valid, *self._posed(rots))
        if self.align is not None and self.align.calibrating and self.shape.frozen:
            # the clip's first frames: focal estimate, beta and depth anchoring, then Eq. 14 again
            if self._calibrate(valid):
                self._last_transl = last
                self._solve_translation(valid, *self._posed(rots))

    def _posed(self, rots: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Posed, scaled joints ``(B, 52, 3)`` of ``rots (B, 52, 3, 3)`` with the clip's shape and
        the model's body keypoints ``(B, 24, 3)`` (Eq. 14's head bones, face close-ups; None
        without the image-aligned fit)."""
        if self.align is not None:       # the fit's model keypoints pose the same skeleton: one FK for both
            self.align.set_shape(self.shape.betas, self.shape.scale)
            joints, _, points = self.align.kp.pose(rots, np.zeros((len(rots), 3)))
            return joints, points[:, :24]
        j_rest = np.broadcast_to(self.rest_joints(self.shape.betas), (len(rots), NUM_JOINTS, 3))
        joints, _ = forward_kinematics(rots, np.ascontiguousarray(j_rest), self.parents)
        return joints * self.shape.scale, None

    def _solve_translation(self, valid: list[FrameRecord], joints: np.ndarray, points: np.ndarray | None) -> None:
        if not valid:
            return
        last_z = None if self._last_transl is None else float(self._last_transl[2])
        kp2d = np.stack([r.body_2d for r in valid]).astype(np.float64)
        if points is not None:
            # Eq. 14 on what the camera sees: confidences lowered outside the image (visibility.py); with
            # the torso out of frame the head bones (the model's face points) give the depth.  Without
            # them (no image-aligned fit) a face close-up keeps the guessed torso rather than no depth.
            kp2d[..., 2] = eq14_confidence(kp2d[..., 2], np.stack([r.keypoint_visibility[:kp2d.shape[1]] for r in valid]))
        # a new track (another person) starts without the last depth as Eq. 14's prior: split there
        starts = [i for i, r in enumerate(valid) if r.track_break and i > 0]
        parts = []
        for a, b in zip([0] + starts, starts + [len(valid)]):
            pts = None if points is None else points[a:b]
            prior = None if valid[a].track_break else (last_z if a == 0 else parts[-1][2])
            t_ab, ok_ab = solve_translations_in_order(self.translation, kp2d[a:b], joints[a:b], prior, pts)
            solved = np.flatnonzero(ok_ab)
            parts.append((t_ab, ok_ab, float(t_ab[solved[-1], 2]) if solved.size else prior))
        t = np.concatenate([p[0] for p in parts])
        ok = np.concatenate([p[1] for p in parts])
        for r, j, ti, oki in zip(valid, joints, t, ok):
            r.joints = j
            r.transl_ok = bool(oki)
            if r.transl_ok:
                self._last_transl = ti
            r.transl = self._last_transl if self._last_transl is not None else np.array(DEFAULT_TRANSL)

    def _smooth(self, r: FrameRecord) -> None:
        """Filtered quaternions and translation (invalid frames: unfiltered, filled later) and
        expression."""
        if r.valid:
            if r.track_break:          # another person (or a cut): nothing filtered across it
                self.rot_filter.reset()
                self.transl_filter.reset()
                self.expr_filter.reset()
            r.quat = self.rot_filter.quaternions(r.rot, r.time)
            r.transl = self.transl_filter(r.transl, r.time)
        else:
            r.quat = rotations.matrix_to_quat_wxyz(r.rot)
            r.transl = np.zeros(3) if self._last_transl is None else self._last_transl.copy()
            r.joints = None
        if r.face_ok and self.face and self.expr_centred is None:
            r.expression = self.expr_filter(r.expression, r.time)
