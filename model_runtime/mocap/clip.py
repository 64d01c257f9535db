"""A parsed MoCap clip: joint positions of the source skeleton after its forward kinematics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MocapClip:
    """One clip in metres, Y up (both HDM05 and Bandai Namco are Y-up).

    positions ``(F, N, 3)`` float32: world positions of the source nodes
    (``node_names``, ``N``) per frame; ``fps`` the frame rate of ``positions``;
    ``skeleton_id`` names the source skeleton (an HDM05 actor's ASF, or a hash
    of a BVH hierarchy): clips with the same id share body proportions, so
    retargeting fits one shape per id; ``fmt`` is ``"amc"`` or ``"bvh"``.
    """

    path: str
    fmt: str
    fps: float
    node_names: tuple[str, ...]
    positions: np.ndarray
    skeleton_id: str

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    def node(self, name: str) -> np.ndarray:
        """Positions ``(F, 3)`` of one node."""
        return self.positions[:, self.node_names.index(name)]

    def subsample(self, target_fps: float) -> "MocapClip":
        """Every k-th frame so that the rate is about ``target_fps`` (never upsamples)."""
        step = max(1, int(round(self.fps / target_fps)))
        return MocapClip(self.path, self.fmt, self.fps / step, self.node_names, self.positions[::step], self.skeleton_id)
