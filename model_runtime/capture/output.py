"""What a capture writes: the capture file's per-frame rows (:func:`file_frame`) and per-clip values
(:class:`ClipValues`), and :class:`CaptureOutput`, which hands each finished frame to the file and
the callbacks."""
from __future__ import annotations

import logging
import time
import weakref
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core import rotations
from ..core.capture_file import CaptureWriter
from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES, JOINT_NAMES, NUM_JOINTS
from ..face.stage import FaceStage
from .feet_stage import FootStage
from .focal import ClipCamera
from .records import FrameCallback, FrameRecord, ProgressCallback, StageTimer
from .sources import FrameSource
from .tracking import ShapeEstimator
from .visibility import KEYPOINT_NAMES, SOURCE_GAP   # KEYPOINT_NAMES: rows of keypoints_2d/_3d/_visibility

log = logging.getLogger(__name__)

_NB = len(BODY_KEYPOINT_NAMES)
_NH = len(HAND21_NAMES)
#: body keypoint rows of the two wrists [left, right] (the hand rows are placed relative to them)
_BODY_WRIST_ROWS = np.array([BODY_KEYPOINT_NAMES.index("left_wrist"), BODY_KEYPOINT_NAMES.index("right_wrist")])


# --------------------------------------------------------------------------- per-frame rows
def file_frame(rec: FrameRecord) -> dict[str, np.ndarray]:
    """One record -> the per-frame keys of the capture file.  Non-finite values (a last line of
    defence: a capture file never holds NaN/inf) are written as zeros of an invalid frame."""
    rot = rotations.quat_wxyz_to_matrix(rec.quat)
    kp2d = np.concatenate([rec.body_2d, rec.hands_2d.reshape(2 * _NH, 3)], 0)
    row = dict(pose_6d=rotations.matrix_to_rot6d(rot), transl=rec.transl, valid=rec.valid,
               keypoints_2d=kp2d, keypoints_3d=keypoints_3d(rec),
               face_expression=rec.expression, face_sh=rec.sh, keypoint_visibility=rec.keypoint_visibility,
               joint_confidence=rec.joint_confidence, joint_source=rec.joint_source,
               foot_contact=np.asarray(rec.foot_contact, bool), track_break=bool(rec.track_break))
    bad = [k for k, v in row.items() if not np.isfinite(np.asarray(v, np.float64)).all()]
    if bad:
        log.warning("frame %d: non-finite %s; written as an invalid frame", rec.index, ", ".join(bad))
        row = {k: np.nan_to_num(np.asarray(v, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
               for k, v in row.items()}
        if "pose_6d" in bad:
            row["pose_6d"] = rotations.matrix_to_rot6d(np.tile(np.eye(3), (NUM_JOINTS, 1, 1)))
        row["valid"] = False
        row["joint_confidence"] = np.zeros(NUM_JOINTS, np.float32)
        row["joint_source"] = np.full(NUM_JOINTS, SOURCE_GAP, np.uint8)
    return row


def keypoints_3d(rec: FrameRecord) -> np.ndarray:
    """Detected 3D keypoints placed in the camera frame, ``(66, 3)`` metres.

    Body rows: the detector's pelvis-relative points plus the fitted model's
    pelvis (``scale * FK + transl``); hand rows: the detector's wrist-relative
    points plus the body row of the same wrist.  Rows with confidence 0 are 0.
    """
    out = np.zeros((len(KEYPOINT_NAMES), 3))
    if not rec.valid or rec.joints is None:
        return out
    pelvis = rec.joints[0] + rec.transl
    body = rec.body_3d + pelvis
    body = np.where(rec.body_2d[:, 2:3] > 0, body, 0.0)
    hands = rec.hands_3d + body[_BODY_WRIST_ROWS][:, None, :]
    hands = np.where(rec.hands_2d[..., 2:3] > 0, hands, 0.0)
    out[:_NB] = body
    out[_NB:] = hands.reshape(2 * _NH, 3)
    return out


# --------------------------------------------------------------------------- per-clip values
class ClipValues:
    """The capture file's per-clip values: camera, names, the clip's shape and face, the ground plane."""

    def __init__(self, shape: ShapeEstimator, face: FaceStage | None, body_model: str, face_model: str,
                 camera: ClipCamera | None = None, feet: FootStage | None = None):
        self.shape, self.face, self.body_model, self.face_model = shape, face, body_model, face_model
        self.camera = camera     # camera_K / camera_source (None: the K given to initial, "default")
        self.feet = feet         # ground_plane (zeros until estimated: core/capture_file.py)
        self._written: dict[str, np.ndarray] | None = None

    def initial(self, source: FrameSource, K: np.ndarray, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        """All per-clip values as known at the start (``extra`` added, e.g. the source's name)."""
        face = self.face
        ident, alb = face.clip_params() if face is not None else (np.zeros(0, np.float32), np.zeros(0, np.float32))
        vals = dict(
            fps=np.float32(source.fps), image_size=np.asarray(source.image_size, np.int32),
            camera_K=K.astype(np.float32), joint_names=np.asarray(JOINT_NAMES),
            betas=self.shape.betas.astype(np.float32), scale=np.float32(self.shape.scale),
            keypoint_names=np.asarray(KEYPOINT_NAMES),
            face_identity=np.asarray(ident, np.float32), face_albedo=np.asarray(alb, np.float32),
            expression_names=np.asarray(face.expression_names if face is not None else (), dtype=str),
            body_model=np.asarray(self.body_model), face_model=np.asarray(self.face_model),
            camera_source=np.asarray(self.camera.source if self.camera is not None else "default"),
            ground_plane=np.zeros(4, np.float32), iris_colour=np.zeros(3, np.float32),
            face_albedo_detail=np.zeros((0, 3), np.float32),
        )
        vals.update(extra or {})
        return vals

    def write_changes(self, writer: CaptureWriter) -> None:
        """Write the per-clip values (shape, scale, face identity/albedo) as soon as they change, so a
        killed capture keeps them (:class:`CaptureWriter` writes ``static.npz`` atomically)."""
        vals = dict(betas=self.shape.betas.astype(np.float32), scale=np.float32(self.shape.scale))
        if self.camera is not None:      # the clip's focal estimate
            vals.update(camera_K=self.camera.K.astype(np.float32), camera_source=np.asarray(self.camera.source))
        if self.feet is not None and self.feet.ground_plane is not None:
            vals.update(ground_plane=self.feet.ground_plane)
        if self.face is not None:
            ident, alb = self.face.clip_params()
            vals.update(face_identity=np.asarray(ident, np.float32), face_albedo=np.asarray(alb, np.float32))
            if hasattr(self.face, "iris_colour"):
                vals.update(iris_colour=np.asarray(self.face.iris_colour(), np.float32))
            if hasattr(self.face, "albedo_detail"):
                vals.update(face_albedo_detail=np.asarray(self.face.albedo_detail(), np.float32))
        if not all(np.isfinite(v).all() for v in vals.values() if v.dtype.kind == "f") or not vals["scale"] > 0:
            log.warning("per-clip values are not finite yet; the file keeps the last finite ones")
            return
        if self._written is not None and all(np.array_equal(v, self._written.get(k)) for k, v in vals.items()):
            return
        writer.update_static(**vals)
        self._written = vals


# --------------------------------------------------------------------------- writing
class CaptureOutput:
    """Hands finished frames to the capture file (``output``; None = no file) and the callbacks.

    ``on_frame(record)`` and ``on_progress(frames_done, total_or_None, fps)`` are
    called after every written frame.  Raises what :class:`CaptureWriter` raises for a bad path.
    Frames the feet stage decides after they were written (``values.feet.take_revised()``: final
    contact labels, locked legs) are written again where they are (:meth:`CaptureWriter.rewrite`).
    """

    def __init__(self, output: Path | str | None, values: ClipValues, source: FrameSource, K: np.ndarray,
                 extra: Mapping[str, Any] | None, chunk_frames: int, timer: StageTimer,
                 on_frame: FrameCallback | None, on_progress: ProgressCallback | None):
        self.values, self.timer, self.on_frame, self.on_progress = values, timer, on_frame, on_progress
        self.total = source.num_frames
        self.writer = None if output is None else CaptureWriter(output, static=values.initial(source, K, extra),
                                                                chunk_frames=chunk_frames)
        self.frames = 0
        self.t_start = time.perf_counter()
        self._rows: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # written record -> its frame
        self._static_chunks = 0     # written chunks when the per-clip values were last written

    def emit(self, records: list[FrameRecord]) -> None:
        """Write again the frames the feet stage revised, then ``records`` (in order): at every
        ``on_progress`` call the file holds every written frame as it now is."""
        self.revise()
        for rec in records:
            t0 = self.timer.now()
            if self.writer is not None:
                self.writer.append(**file_frame(rec))
            self._rows[rec] = self.frames
            self.timer.since("write", t0)
            self.frames += 1
            if self.on_frame is not None:
                self.on_frame(rec)
            if self.on_progress is not None:
                el = time.perf_counter() - self.t_start
                self.on_progress(self.frames, self.total, self.frames / el if el > 0 else 0.0)

    def revise(self) -> None:
        """Write again the frames the feet stage changed after they were written (those not written
        yet carry the change when they are)."""
        feet = self.values.feet
        if feet is None:
            return
        revised = feet.take_revised()
        if self.writer is None or not revised:
            return
        t0 = self.timer.now()
        rows = {row: file_frame(r) for r in revised if (row := self._rows.get(r)) is not None}
        if rows:
            self.writer.rewrite(rows)
        self.timer.since("write", t0, n=0)

    def write_clip_values(self, force: bool = False) -> None:
        """The per-clip values, when they changed (:meth:`ClipValues.write_changes`) and a chunk of
        frames reached the disk since they were last written (or ``force``): frames on disk and the
        values that describe them stay together; rewriting ``static.npz`` after every batch while
        the shape and face settle cost ~4 ms a frame (courtyard, 40 frames)."""
        if self.writer is None:
            return
        chunks = self.writer.chunks_written
        if force or chunks != self._static_chunks:
            self.values.write_changes(self.writer)
            self._static_chunks = chunks

    def close(self, keep: bool) -> Path | None:
        """Finish the file (``keep``: as the capture; else as a kept partial capture); -> its path."""
        self.revise()
        if self.writer is None:
            return None
        self.write_clip_values(force=True)
        return self.writer.close() if keep else self.writer.abort()
