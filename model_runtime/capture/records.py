"""Typed values passed between the capture's stages, and the capture's results.

* :class:`DetectedFrame`: what the detect thread hands to the fitting (frame, detection, read time).
* :class:`FrameRecord`: one frame on its way from the fitting to the capture file; each stage
  fills its own fields (shapes in the docstring).
* :class:`StageTimer`, :class:`CaptureResult`: time per stage, what a capture produced.
"""
from __future__ import annotations

import time

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Final, NamedTuple

import numpy as np

from ..core.skeleton import NUM_JOINTS
from ..detectors.base import Detection
from .sources import Frame
from .visibility import NUM_KEYPOINTS, SOURCE_GAP

#: ``face`` is per keyframe fit (``CaptureResult.face_fits``), ``face_track`` per tracked frame
STAGES: Final[tuple[str, ...]] = ("decode", "detect", "ik", "face_track", "face", "filter", "write")
#: spherical-harmonics lighting coefficients per frame (9 bands x RGB)
NUM_SH: Final[int] = 27


class DetectedFrame(NamedTuple):
    """A decoded frame, its detection and when it was read (``time.perf_counter()``, for latency)."""

    frame: Frame
    detection: Detection
    t_read: float


@dataclass(eq=False)
class FrameRecord:
    """One frame through the capture: detection -> IK -> face -> translation -> filters -> file.

    Set from the detection (:func:`fitting.frame_record`), float arrays:
        index: frame number in the source; time: seconds; t_read: when the frame was read.
        valid: a person was found (False: the frame is gap-filled).
        body_2d ``(24, 3)`` px + confidence, body_3d ``(24, 3)`` m (pelvis-relative, camera axes),
        non-finite rows zeroed.
        hands_2d, hands_3d ``(2, 21, 3)``, hands_conf ``(2,)``: [left, right] after the
        hand-side correction.
        image_size: (width, height) px of the frame.

    Set by the IK (:class:`fitting.IKFitter`):
        rot ``(52, 3, 3)``: joint rotations relative to the parent (identity until fitted).
        hand_rot ``(2, 15, 3, 3)`` fingers of this frame's HandIKNet (None once merged into ``rot``).
        keypoint_visibility ``(66,)``: body, left-hand, right-hand keypoints (:mod:`visibility`).
        ik_conf ``(66,)``: the detector's confidences of the seen keypoints (and of the torso's,
        :data:`visibility.IK_TORSO`), 0 for the unseen ones: what the IK uses.
        joint_confidence ``(52,)``, joint_source ``(52,)`` uint8: how much of each joint's rotation
        the camera supports, and where the rest comes from (:mod:`visibility`; 0 and
        ``SOURCE_GAP`` on frames without a person).

    Set by the clip (:class:`clip.ClipCapture`, :class:`tracking.PersonSwitchDetector`):
        track_break: a new track starts here (another person, or a cut): nothing temporal links this
        frame to the ones before it.

    Set by the face (:class:`clip.ClipCapture`):
        expression ``(E,)``; face_ok: the face was tracked (False: the face gap is filled);
        keyframe_fit: the keyframe fit started on this frame (a future of the lighting ``(27,)``
        or None), else None.
        sh ``(27,)``: the lighting, set on release (:class:`keyframes.KeyframeScheduler`).

    Set by the post-processing (:class:`postprocess.MotionPostprocessor`):
        joints ``(52, 3)`` posed, scaled joints relative to the model origin (None when invalid);
        transl ``(3,)`` m camera frame; transl_ok: Eq. 14 had a solution on this frame;
        quat ``(52, 4)`` WXYZ smoothed rotations; betas ``(16,)``, scale: the clip's shape.
        foot_contact ``(2,)`` bool [left, right] (:class:`feet_stage.FootStage`; planted feet locked there).
    """

    index: int
    time: float
    t_read: float
    valid: bool
    body_2d: np.ndarray
    body_3d: np.ndarray
    hands_2d: np.ndarray
    hands_3d: np.ndarray
    hands_conf: np.ndarray
    expression: np.ndarray
    image_size: tuple[int, int] = (0, 0)
    keypoint_visibility: np.ndarray = field(default_factory=lambda: np.zeros(NUM_KEYPOINTS, np.float32))
    ik_conf: np.ndarray = field(default_factory=lambda: np.zeros(NUM_KEYPOINTS))
    joint_confidence: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS, np.float32))
    joint_source: np.ndarray = field(default_factory=lambda: np.full(NUM_JOINTS, SOURCE_GAP, np.uint8))
    sh: np.ndarray = field(default_factory=lambda: np.zeros(NUM_SH))
    rot: np.ndarray = field(default_factory=lambda: np.tile(np.eye(3), (NUM_JOINTS, 1, 1)))
    hand_rot: np.ndarray | None = None
    face_ok: bool = False
    keyframe_fit: Future | None = None
    joints: np.ndarray | None = None
    transl: np.ndarray | None = None
    transl_ok: bool = False
    quat: np.ndarray | None = None
    betas: np.ndarray | None = None
    scale: float | None = None
    foot_contact: np.ndarray = field(default_factory=lambda: np.zeros(2, bool))
    track_break: bool = False


@dataclass
class StageTimer:
    """Total seconds and counts per stage; each stage is written by one thread only."""

    total: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    count: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES})
    dropped: int = 0      # live frames dropped because the fitting fell behind

    cpu: dict[str, float] = field(default_factory=dict)   # thread CPU seconds of the stages timed by since()

    def add(self, stage: str, seconds: float, n: int = 1) -> None:
        self.total[stage] += seconds
        self.count[stage] += n

    @staticmethod
    def now() -> tuple[float, float]:
        """``(wall, this thread's CPU)`` seconds, for :meth:`since`."""
        return time.perf_counter(), time.thread_time()

    def since(self, stage: str, start: tuple[float, float], n: int = 1) -> None:
        """:meth:`add` the wall time since ``start`` (:meth:`now`) and record the thread's CPU time
        (what the stage costs whatever else runs on the machine)."""
        wall, cpu = self.now()
        self.add(stage, wall - start[0], n)
        self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu - start[1]

    def mean_ms(self) -> dict[str, float]:
        return {s: 1000.0 * self.total[s] / max(self.count[s], 1) for s in STAGES}

    def mean_cpu_ms(self) -> dict[str, float]:
        """Thread CPU ms per counted item of the stages timed by :meth:`since`."""
        return {s: 1000.0 * self.cpu[s] / max(self.count[s], 1) for s in STAGES if s in self.cpu}


@dataclass
class CaptureResult:
    """What a finished capture produced."""

    output: Path | None
    frames: int
    valid_frames: int
    cancelled: bool
    wall_s: float
    stage_ms: dict[str, float]
    hand_swaps: int = 0
    dropped_frames: int = 0
    face_fits: int = 0       # keyframe face fits (every face frame is tracked); stage_ms["face"] is per fit
    stage_cpu_ms: dict[str, float] = field(default_factory=dict)   # thread CPU ms, as stage_ms (StageTimer.mean_cpu_ms)
    fitting_cpu_s: float = 0.0   # CPU seconds of the fitting thread (hand sides, IK, face tracker, filters, writing)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


#: ``on_frame(record)``: a written frame (its :class:`FrameRecord`)
FrameCallback = Callable[[FrameRecord], None]
#: ``on_progress(frames_done, total_or_None, fps)``
ProgressCallback = Callable[[int, "int | None", float], None]
