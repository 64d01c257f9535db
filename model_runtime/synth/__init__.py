"""Synthetic data engine (issue 12): rendered people with exact labels for body, hands and face.

API::

    from model_runtime.synth import SynthConfig, generate
    batch = generate(SynthConfig(), seed=0, count=8, device="cuda")   # SynthBatch on the GPU

Shards: ``python -m model_runtime synth --out DIR --count N --seed S`` and
:func:`model_runtime.synth.shards.read_shards` (yields SynthBatch); preview grid:
``python -m model_runtime synth preview --out grid.png``; evaluation: ``eval synth``.

Keypoint orders (every label is computed from the same posed 3D points that are projected):

* body (24): :data:`model_runtime.core.skeleton.BODY_KEYPOINT_NAMES` = pelvis, left_hip,
  right_hip, left_knee, right_knee, left_ankle, right_ankle, neck, head, left_shoulder,
  right_shoulder, left_elbow, right_elbow, left_wrist, right_wrist (SMPL-H joints, "basic"),
  then nose, left_eye, right_eye, left_ear, right_ear, left_heel, right_heel, left_big_toe,
  right_big_toe (mesh vertices, "extended");
* hands (2 x 21), axis 1 = [left, right] of the person: :data:`~model_runtime.core.skeleton.HAND21_NAMES`
  = wrist, thumb1..4, index1..4, middle1..4, ring1..4, pinky1..4 (joints 1-3 are SMPL-H
  finger joints, 4 = fingertip vertex);
* face_68: iBUG-68 (the face model's ``landmarks68``); face_468: MediaPipe face mesh order
  (the face model's MediaPipe correspondence, :mod:`model_runtime.face.correspondence`).

Pixels: (0, 0) is the top-left corner of the top-left pixel; camera x right, y down, z forward, m.
"""
from .config import SynthConfig

__all__ = ["SynthBatch", "SynthConfig", "generate"]


def __getattr__(name: str):
    """``SynthBatch`` and ``generate`` load torch: imported on first use, so that the CLI can
    build its parser from :class:`SynthConfig` (standard library) without loading torch."""
    if name == "SynthBatch":
        from .batch import SynthBatch
        return SynthBatch
    if name == "generate":
        from .engine import generate
        return generate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
