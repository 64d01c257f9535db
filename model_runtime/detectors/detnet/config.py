"""DetNet configuration: keypoint sets, bone parents, flip tables and the size / ablation switches.

Two independent switches:

* ``size`` (width presets, :data:`SIZES`): ``"small"`` (the CPU-trainable one shipped here) and
  ``"base"`` (wider/deeper, for a GPU).  They only change channel counts and block counts.
* ``hand_features`` (the paper's Table 6 ablation): ``"both"`` = DetNet (body-features F* and
  supp-features), ``"supp"`` = DetNet-S(upplementary) (the hand branch sees only the
  high-resolution crop), ``"body"`` = DetNet-B(ody) (only body-features, no SuppFeatNet).

Keypoint sets are the project's: body = :data:`~model_runtime.core.skeleton.BODY_KEYPOINT_NAMES`
(15 basic from BasicBody-PoseNet, 9 extended from the ExtBody-PoseNet), hands =
:data:`~model_runtime.core.skeleton.HAND21_NAMES` (21 each), so a decoded DetNet output drops into
:class:`model_runtime.detectors.base.Detection` unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Final

import numpy as np

from ...core.skeleton import BODY_KEYPOINT_NAMES, BODY_KEYPOINTS_BASIC, BODY_KEYPOINTS_EXTENDED, HAND21_NAMES

NUM_BASIC: Final[int] = len(BODY_KEYPOINTS_BASIC)        # 15
NUM_EXTENDED: Final[int] = len(BODY_KEYPOINTS_EXTENDED)  # 9
NUM_BODY: Final[int] = len(BODY_KEYPOINT_NAMES)          # 24
NUM_HAND: Final[int] = len(HAND21_NAMES)                 # 21
NUM_FACE_POINTS: Final[int] = 68                         # iBUG-68 points supervise the face heat-map

_BODY_PARENT_NAMES: Final[dict[str, str | None]] = {
    "pelvis": None, "left_hip": "pelvis", "right_hip": "pelvis", "left_knee": "left_hip",
    "right_knee": "right_hip", "left_ankle": "left_knee", "right_ankle": "right_knee", "neck": "pelvis",
    "head": "neck", "left_shoulder": "neck", "right_shoulder": "neck", "left_elbow": "left_shoulder",
    "right_elbow": "right_shoulder", "left_wrist": "left_elbow", "right_wrist": "right_elbow",
    "nose": "head", "left_eye": "head", "right_eye": "head", "left_ear": "head", "right_ear": "head",
    "left_heel": "left_ankle", "right_heel": "right_ankle", "left_big_toe": "left_ankle",
    "right_big_toe": "right_ankle",
}
BODY_PARENTS: Final[np.ndarray] = np.array(
    [-1 if _BODY_PARENT_NAMES[n] is None else BODY_KEYPOINT_NAMES.index(_BODY_PARENT_NAMES[n])
     for n in BODY_KEYPOINT_NAMES], np.int64)
"""``(24,)`` parent keypoint of each body keypoint (-1: pelvis), for the delta-maps' bone directions."""
HAND_PARENTS: Final[np.ndarray] = np.array([-1] + [0 if i % 4 == 1 else i - 1 for i in range(1, NUM_HAND)], np.int64)
"""``(21,)`` parent of each hand keypoint (wrist -1; a finger's base hangs on the wrist)."""


def _flip_perm(names) -> np.ndarray:
    swap = {n: n.replace("left_", "#").replace("right_", "left_").replace("#", "right_") for n in names}
    return np.array([list(names).index(swap[n]) for n in names], np.int64)


BODY_FLIP: Final[np.ndarray] = _flip_perm(BODY_KEYPOINT_NAMES)
"""``(24,)`` index of each body keypoint's mirror twin (left <-> right)."""

SIZES: Final[dict[str, dict[str, int]]] = {
    # main_c/main_blocks: MainFeatNet; pose_c: body PoseNets; supp_c: SuppFeatNet (always 8 blocks);
    # hand_c: Hand-PoseNets; body_feat_c: the one conv on the resized body-features
    "small": dict(main_c=32, main_blocks=4, pose_c=64, supp_c=24, hand_c=48, body_feat_c=24),
    "base": dict(main_c=64, main_blocks=8, pose_c=128, supp_c=48, hand_c=96, body_feat_c=48),
}
HAND_FEATURES: Final[tuple[str, ...]] = ("both", "supp", "body")


@dataclass(frozen=True)
class DetNetConfig:
    """Architecture switches and geometry (stored inside every weights file).

    Attributes:
        size: width preset, a key of :data:`SIZES`.
        hand_features: Table 6 switch, one of :data:`HAND_FEATURES`.
        input_size: side S of the square network input I_h (px); I = I_h / 4.
        hand_crop: side of the high-resolution hand crop cut from I_h for SuppFeatNet (px).
        hand_map: side of the hand keypoint maps (SuppFeatNet halves ``hand_crop`` once).
        window_t: threshold t of Eq. 6 (fraction of the heat-map mass inside the window).
        box_scale: the Eq. 6 window is enlarged by this factor into the crop box.
        hand_min_box: smallest crop box side, px of I_h.
        hand_units: hand location-maps predict metres x this (decimetres), body ones metres.
    """

    size: str = "small"
    hand_features: str = "both"
    input_size: int = 256
    hand_crop: int = 32
    hand_map: int = 16
    window_t: float = 0.6
    box_scale: float = 1.6
    hand_min_box: float = 12.0
    hand_units: float = 10.0
    widths: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"DetNetConfig.size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.hand_features not in HAND_FEATURES:
            raise ValueError(f"DetNetConfig.hand_features must be one of {', '.join(HAND_FEATURES)}, "
                             f"got {self.hand_features!r}")
        if self.input_size % 8 or self.input_size < 32:
            raise ValueError(f"DetNetConfig.input_size must be a multiple of 8 and >= 32, got {self.input_size}")
        if self.hand_crop != 2 * self.hand_map:
            raise ValueError(f"DetNetConfig.hand_crop must be 2 x hand_map, got {self.hand_crop}, {self.hand_map}")
        if not 0.0 < self.window_t < 1.0:
            raise ValueError(f"DetNetConfig.window_t must be in (0, 1), got {self.window_t}")

    @property
    def width(self) -> dict[str, int]:
        """Channel/block counts: the preset of ``size`` overridden by ``widths`` (tests use tiny ones)."""
        return {**SIZES[self.size], **self.widths}

    @property
    def body_stride(self) -> int:
        """Pixels of I_h per cell of the body maps: I_h -> I is 4x, MainFeatNet halves once more."""
        return 8

    @property
    def body_map(self) -> int:
        """Side of the body feature / keypoint maps."""
        return self.input_size // self.body_stride

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DetNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})
