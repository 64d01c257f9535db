"""Configuration of the synthetic data engine: one frozen dataclass, every variety switchable.

Ranges are documented in ``docs/synthetic.md`` (variety table).  A switch that is off puts the
neutral value in place (mean shape, T-pose-free mocap pose without random hands, mean skin,
no clothing, grey background, frontal white light, no blur/noise/JPEG, ...), so each kind of
variety can be studied on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

PoseSource = Literal["mocap", "mocap-heldout", "random"]


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`model_runtime.synth.generate` renders.

    Image: ``width x height`` px (default the paper's 768 x 1024); crops: ``hand_crop`` and
    ``face_crop`` px (square, rendered at that resolution, not cut from the image).

    Variety switches (True = random, seeded): ``shape`` (beta, alpha, face identity),
    ``pose`` (body from ``pose_source``; False = rest pose), ``hand_pose`` (anatomically limited
    random fingers), ``expression``, ``skin`` (skin tones, face albedo), ``clothing`` (per-part
    garments with procedural patterns), ``hair``, ``background`` (procedural), ``real_background``
    (image regions without people from ``real_background_dir``, needs ``../shared``),
    ``lighting`` (SH + coloured directional), ``camera`` (fov, distance, tilt, roll, placement),
    ``truncation`` (people cut by the frame edge), ``occluders``, ``motion_blur``, ``noise``, ``jpeg``.

    ``pose_source``: ``"mocap"`` (retargeted HDM05 + Bandai Namco training clips),
    ``"mocap-heldout"`` (HDM05 actor dg, the IK evaluation split: used by the evaluation set),
    ``"random"`` (per-joint random rotations inside loose limits; needs no data).
    ``mocap_sets``: the MoCap folders used (``hdm05``: CC BY-SA 3.0; ``bandai_namco``: CC BY-NC 4.0,
    leave it out for data that must not carry a non-commercial term).
    ``data_root``: folder holding ``mocap/`` and ``realdata/`` (default ``$FULLBODY_DATA`` or
    ``<repo>/../shared/data``).  ``pose_bank``: a body pose file (:func:`.poses.save_pose_bank`) used
    for the ``mocap`` poses instead of reading the MoCap folders (a bare GPU machine has neither the
    data nor the readers' dependencies).  ``body``/``face``: ``"builtin"`` or an official model file.
    """

    width: int = 768
    height: int = 1024
    hand_crop: int = 256
    face_crop: int = 256
    shape: bool = True
    pose: bool = True
    hand_pose: bool = True
    expression: bool = True
    skin: bool = True
    clothing: bool = True
    hair: bool = True
    background: bool = True
    real_background: bool = True
    lighting: bool = True
    camera: bool = True
    truncation: bool = True
    occluders: bool = True
    motion_blur: bool = True
    noise: bool = True
    jpeg: bool = True
    pose_source: PoseSource = "mocap"
    mocap_sets: tuple[str, ...] = ("hdm05", "bandai_namco")
    data_root: str | None = None
    pose_bank: str | None = None
    body: str = "builtin"
    face: str = "builtin"
    # probabilities / strengths of the hard cases
    p_far: float = 0.2            # person small in the frame (tiny hands)
    p_truncated: float = 0.25     # person placed partly outside the frame
    p_occluder: float = 0.35      # occluder boxes in front of the person
    p_real_background: float = 0.5
    p_motion_blur: float = 0.3

    def __post_init__(self) -> None:
        for name in ("width", "height", "hand_crop", "face_crop"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 16 or v > 8192:
                raise ValueError(f"SynthConfig.{name} must be an int in [16, 8192], got {v!r}")
        for name in ("p_far", "p_truncated", "p_occluder", "p_real_background", "p_motion_blur"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"SynthConfig.{name} must be in [0, 1], got {v!r}")
        bad = [m for m in self.mocap_sets if m not in ("hdm05", "bandai_namco")]
        if bad or not self.mocap_sets:
            raise ValueError(f"SynthConfig.mocap_sets must be a non-empty subset of ('hdm05', 'bandai_namco'), got {self.mocap_sets!r}")
        if self.pose_source not in ("mocap", "mocap-heldout", "random"):
            raise ValueError(f"SynthConfig.pose_source must be 'mocap', 'mocap-heldout' or 'random', got {self.pose_source!r}")

    @property
    def switches(self) -> tuple[str, ...]:
        """Names of the boolean variety switches."""
        return tuple(f.name for f in fields(self) if f.type in (bool, "bool"))

    def resolved_data_root(self) -> Path:
        if self.data_root is not None:
            return Path(self.data_root)
        from ..ik.data import default_data_root

        return default_data_root()

    def plain(self) -> "SynthConfig":
        """All variety off (a neutral render: tests, debugging)."""
        return replace(self, **{s: False for s in self.switches})

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
