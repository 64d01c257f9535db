"""BVH parser and forward kinematics (Bandai Namco Research Motion Dataset and generic BVH).

Conventions: rotation channels are intrinsic Euler angles in degrees composed
in channel order (``Zrotation Xrotation Yrotation`` -> ``Rz @ Rx @ Ry``);
position channels, where a joint has them, replace its OFFSET as the local
translation.  ``End Site`` blocks become nodes named ``<parent>_end``.
Lengths are converted with ``unit_to_m`` (Bandai: centimetres, 0.01).

Bandai's rest pose is degenerate (every OFFSET along +X; joint orients baked
into the rotations), so only animated frames give meaningful positions: this
parser never uses the rest pose for anything but FK.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError
from .clip import MocapClip
from .fk import euler_to_matrix, skeleton_fk


@dataclass(frozen=True)
class BvhSkeleton:
    """``names (N)``, ``parents (N,)``, ``offsets (N, 3)`` (file units), and per
    node the channel names (empty for end sites) and their first column."""

    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    first_column: np.ndarray

    @property
    def num_channels(self) -> int:
        return int(sum(len(c) for c in self.channels))

    def digest(self) -> str:
        h = hashlib.sha1(repr(self.names).encode() + np.round(self.offsets, 3).tobytes())
        return h.hexdigest()[:10]


def parse_bvh(path: str | Path) -> tuple[BvhSkeleton, np.ndarray, float]:
    """Returns ``(skeleton, motion (F, C) float64, frame_time_s)``."""
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"{path}: BVH file does not exist")
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise InputUnreadableError(f"{path}: cannot read BVH ({e})") from e
    head, sep, motion = text.partition("MOTION")
    if not sep or "HIERARCHY" not in head:
        raise InputUnreadableError(f"{path}: not a BVH file (no HIERARCHY/MOTION sections)")
    tok = head.split()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []
    i = tok.index("HIERARCHY") + 1
    pending: int | None = None
    try:
        while i < len(tok):
            t = tok[i]
            if t in ("ROOT", "JOINT"):
                names.append(tok[i + 1])
                parents.append(stack[-1] if stack else -1)
                offsets.append([0.0, 0.0, 0.0])
                channels.append(())
                pending = len(names) - 1
                i += 2
            elif t == "End":
                names.append(f"{names[stack[-1]]}_end")
                parents.append(stack[-1])
                offsets.append([0.0, 0.0, 0.0])
                channels.append(())
                pending = len(names) - 1
                i += 2
            elif t == "{":
                stack.append(pending)
                i += 1
            elif t == "}":
                stack.pop()
                i += 1
            elif t == "OFFSET":
                offsets[stack[-1]] = [float(v) for v in tok[i + 1:i + 4]]
                i += 4
            elif t == "CHANNELS":
                n = int(tok[i + 1])
                channels[stack[-1]] = tuple(tok[i + 2:i + 2 + n])
                i += 2 + n
            else:
                raise InputUnreadableError(f"{path}: unexpected token {t!r} in HIERARCHY")
    except (IndexError, ValueError) as e:
        raise InputUnreadableError(f"{path}: malformed HIERARCHY ({e})") from e
    first = np.cumsum([0] + [len(c) for c in channels])[:-1]
    skel = BvhSkeleton(tuple(names), np.array(parents), np.array(offsets, float), tuple(channels), first)
    mt = motion.split()
    try:
        n_frames = int(mt[mt.index("Frames:") + 1])
        ft_i = mt.index("Time:")
        frame_time = float(mt[ft_i + 1])
        values = np.array(mt[ft_i + 2:], dtype=np.float64)
    except (ValueError, IndexError) as e:
        raise InputUnreadableError(f"{path}: malformed MOTION header ({e})") from e
    C = skel.num_channels
    if values.size != n_frames * C:
        got = values.size / max(C, 1)
        raise InputUnreadableError(
            f"{path}: MOTION has {values.size} values = {got:.2f} frames of {C} channels; header says {n_frames} frames")
    if n_frames == 0:
        raise InputUnreadableError(f"{path}: zero frames")
    return skel, values.reshape(n_frames, C), frame_time


def bvh_fk(skel: BvhSkeleton, motion: np.ndarray, unit_to_m: float) -> np.ndarray:
    """Node positions ``(F, N, 3)`` in metres."""
    F, N = motion.shape[0], len(skel.names)
    trans = np.broadcast_to(skel.offsets, (F, N, 3)).copy()
    L = np.broadcast_to(np.eye(3), (F, N, 3, 3)).copy()
    # group nodes by identical channel layout so each group is one vectorised call
    layouts: dict[tuple[str, ...], list[int]] = {}
    for n, ch in enumerate(skel.channels):
        layouts.setdefault(ch, []).append(n)
    for ch, nodes in layouts.items():
        if not ch:
            continue
        cols = skel.first_column[nodes][:, None] + np.arange(len(ch))[None]  # (n, len(ch))
        vals = motion[:, cols]  # (F, n, len(ch))
        pos_idx = [k for k, c in enumerate(ch) if c.lower().endswith("position")]
        rot_idx = [k for k, c in enumerate(ch) if c.lower().endswith("rotation")]
        if len(pos_idx) not in (0, 3) or len(pos_idx) + len(rot_idx) != len(ch):
            raise ValueError(f"unsupported channel layout {ch}")
        if pos_idx:
            order = [ "XYZ".index(ch[k][0].upper()) for k in pos_idx]
            trans[:, nodes] = vals[..., pos_idx][..., np.argsort(order)]
        if rot_idx:
            order = "".join(ch[k][0].upper() for k in rot_idx)
            L[:, nodes] = euler_to_matrix(vals[..., rot_idx], order)
    root = trans[:, 0]
    return skeleton_fk(L, trans, skel.parents, root, offset_in_own_frame=False) * unit_to_m


def load_bvh_clip(path: str | Path, unit_to_m: float = 0.01) -> MocapClip:
    """Parse + FK a BVH clip (default units: centimetres)."""
    skel, motion, frame_time = parse_bvh(path)
    try:
        pos = bvh_fk(skel, motion, unit_to_m)
    except ValueError as e:
        raise InputUnreadableError(f"{path}: {e}") from e
    fps = 1.0 / frame_time if frame_time > 0 else 30.0
    return MocapClip(str(path), "bvh", fps, skel.names, pos.astype(np.float32), f"bvh:{skel.digest()}")
