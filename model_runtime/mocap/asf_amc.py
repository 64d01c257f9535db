"""ASF/AMC (Acclaim; HDM05, CMU) parser and forward kinematics.

ASF conventions (VICON/CMU): ``:units length L`` means lengths are in units of
``1/L`` inch (HDM05: ``L = 0.45``); angles in degrees.  A bone ``b`` has a
direction ``d_b`` (unit, world frame at rest), a length and an ``axis ax ay az
XYZ`` orientation ``C_b = Rz(az) Ry(ay) Rx(ax)``.  An AMC frame gives each bone
Euler angles for its ``dof`` subset of ``rx ry rz``; its motion matrix
``E_b = Rz Ry Rx`` acts in the bone's axis frame, so the bone's local rotation
is ``L_b = C_b E_b C_b^-1`` and its end point is
``p_b = p_parent + length_b * G_b @ d_b`` with ``G_b = G_parent @ L_b``.
The root has ``order TX TY TZ RX RY RZ`` (translation in length units) and
``axis XYZ``.  Rest pose (all zeros) is the ASF T-pose.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError
from .clip import MocapClip
from .fk import euler_to_matrix, skeleton_fk

INCH_M = 0.0254
_ROT_DOFS = ("rx", "ry", "rz")


@dataclass(frozen=True)
class AsfSkeleton:
    """Parsed ASF: ``names[0] == "root"``; per node ``parents``, ``offsets (N,3)``
    (length * direction, ASF units), ``axis_rot (N,3,3)`` (C_b), ``dofs`` (tuple
    of dof names per node), root ``order``; ``to_metres`` the unit factor."""

    path: str
    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    axis_rot: np.ndarray
    dofs: tuple[tuple[str, ...], ...]
    root_order: tuple[str, ...]
    root_axis_rot: np.ndarray
    to_metres: float

    @property
    def skeleton_id(self) -> str:
        return Path(self.path).stem


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise InputMissingError(f"{path}: {what} file does not exist")
    try:
        return path.read_text(encoding="latin-1")
    except OSError as e:
        raise InputUnreadableError(f"{path}: cannot read {what} ({e})") from e


def parse_asf(path: str | Path) -> AsfSkeleton:
    """Parse an ASF skeleton file (errors name the file and the offending field)."""
    path = Path(path)
    lines = [ln.split("#", 1)[0].strip() for ln in _read_text(path, "ASF").splitlines()]
    section = None
    length_unit = 1.0
    root_order: tuple[str, ...] = ("tx", "ty", "tz", "rx", "ry", "rz")
    root_axis = "XYZ"
    root_orient = np.zeros(3)
    bones: dict[str, dict] = {}
    cur: dict | None = None
    children: dict[str, list[str]] = {}
    for ln in lines:
        if not ln:
            continue
        tok = ln.split()
        if tok[0].startswith(":"):
            section = tok[0][1:].lower()
            continue
        key = tok[0].lower()
        if section == "units" and key == "length":
            length_unit = float(tok[1])
        elif section == "units" and key == "angle" and tok[1].lower() not in ("deg", "degree", "degrees"):
            raise InputUnreadableError(f"{path}: field ':units angle' is {tok[1]!r}; only degrees are supported")
        elif section == "root":
            if key == "order":
                root_order = tuple(t.lower() for t in tok[1:])
            elif key == "axis":
                root_axis = tok[1].upper()
            elif key == "orientation":
                root_orient = np.array([float(v) for v in tok[1:4]])
        elif section == "bonedata":
            if key == "begin":
                cur = {"dof": ()}
            elif key == "end":
                if cur is None or "name" not in cur:
                    raise InputUnreadableError(f"{path}: a bonedata block has no name")
                bones[cur["name"]] = cur
                cur = None
            elif cur is not None:
                if key == "name":
                    cur["name"] = tok[1]
                elif key == "direction":
                    cur["direction"] = np.array([float(v) for v in tok[1:4]])
                elif key == "length":
                    cur["length"] = float(tok[1])
                elif key == "axis":
                    if tok[4].upper() != "XYZ":
                        raise InputUnreadableError(f"{path}: bone {cur.get('name')}: axis order {tok[4]} unsupported")
                    cur["axis"] = np.array([float(v) for v in tok[1:4]])
                elif key == "dof":
                    dofs = tuple(t.lower() for t in tok[1:])
                    bad = [d for d in dofs if d not in _ROT_DOFS]
                    if bad:
                        raise InputUnreadableError(f"{path}: bone {cur.get('name')}: unsupported dof {bad}")
                    cur["dof"] = dofs
        elif section == "hierarchy" and key not in ("begin", "end"):
            children.setdefault(tok[0], []).extend(tok[1:])
    for name, b in bones.items():
        for f in ("direction", "length", "axis"):
            if f not in b:
                raise InputUnreadableError(f"{path}: bone {name} has no '{f}'")
    # topological order from the hierarchy, root first
    names, parents = ["root"], [-1]
    stack = [("root", 0)]
    while stack:
        par, pidx = stack.pop(0)
        for ch in children.get(par, []):
            if ch not in bones:
                raise InputUnreadableError(f"{path}: hierarchy names unknown bone {ch!r}")
            names.append(ch)
            parents.append(pidx)
            stack.append((ch, len(names) - 1))
    if len(names) != len(bones) + 1:
        missing = sorted(set(bones) - set(names))
        raise InputUnreadableError(f"{path}: bones not reachable from root in :hierarchy: {missing}")
    offsets = np.zeros((len(names), 3))
    axis_rot = np.tile(np.eye(3), (len(names), 1, 1))
    dofs: list[tuple[str, ...]] = [()]
    for i, n in enumerate(names[1:], 1):
        b = bones[n]
        d = b["direction"] / max(np.linalg.norm(b["direction"]), 1e-12)
        offsets[i] = d * b["length"]
        axis_rot[i] = euler_to_matrix(b["axis"][::-1], "ZYX")
        dofs.append(b["dof"])
    if root_axis != "XYZ":
        raise InputUnreadableError(f"{path}: root axis order {root_axis} unsupported")
    return AsfSkeleton(
        path=str(path), names=tuple(names), parents=np.array(parents), offsets=offsets, axis_rot=axis_rot,
        dofs=tuple(dofs), root_order=root_order, root_axis_rot=euler_to_matrix(root_orient[::-1], "ZYX"),
        to_metres=INCH_M / length_unit,
    )


def parse_amc(path: str | Path, skel: AsfSkeleton) -> np.ndarray:
    """AMC motion -> per-node channel values ``(F, N, 3)`` (rx, ry, rz in degrees;
    for the root: its rotation) and root translation ``(F, 3)`` packed as
    ``(F, N + 1, 3)`` with the translation in the last slot."""
    path = Path(path)
    text = _read_text(path, "AMC")
    index = {n: i for i, n in enumerate(skel.names)}
    N = len(skel.names)
    frames: list[np.ndarray] = []
    cur: np.ndarray | None = None
    frame_no = 0
    for lineno, ln in enumerate(text.splitlines(), 1):
        ln = ln.strip()
        if not ln or ln.startswith("#") or ln.startswith(":"):
            continue
        tok = ln.split()
        if tok[0].isdigit() and len(tok) == 1:
            frame_no = int(tok[0])
            cur = np.zeros((N + 1, 3))
            frames.append(cur)
            continue
        if cur is None:
            raise InputUnreadableError(f"{path}: line {lineno}: values before the first frame number")
        name = tok[0]
        if name not in index:
            raise InputUnreadableError(f"{path}: frame {frame_no}: bone {name!r} is not in {skel.path}")
        try:
            vals = [float(v) for v in tok[1:]]
        except ValueError:
            raise InputUnreadableError(f"{path}: frame {frame_no}: bone {name}: non-numeric value") from None
        i = index[name]
        if i == 0:
            if len(vals) != len(skel.root_order):
                raise InputUnreadableError(f"{path}: frame {frame_no}: root has {len(vals)} values, ASF order has {len(skel.root_order)}")
            for ch, v in zip(skel.root_order, vals):
                if ch.startswith("t"):
                    cur[N, "xyz".index(ch[1])] = v
                else:
                    cur[0, "xyz".index(ch[1])] = v
        else:
            if len(vals) != len(skel.dofs[i]):
                raise InputUnreadableError(f"{path}: frame {frame_no}: bone {name} has {len(vals)} values, ASF declares {len(skel.dofs[i])} dofs")
            for ch, v in zip(skel.dofs[i], vals):
                cur[i, "xyz".index(ch[1])] = v
    if not frames:
        raise InputUnreadableError(f"{path}: no frames")
    return np.stack(frames)


def amc_fk(skel: AsfSkeleton, channels: np.ndarray) -> np.ndarray:
    """Node end positions ``(F, N, 3)`` in metres from :func:`parse_amc` output."""
    N = len(skel.names)
    E = euler_to_matrix(channels[:, :N, ::-1], "ZYX")  # Rz Ry Rx, angles (rz, ry, rx)
    C = skel.axis_rot
    C[0] = skel.root_axis_rot
    L = C[None] @ E @ np.swapaxes(C, -1, -2)[None]
    pos = skeleton_fk(L, skel.offsets, skel.parents, channels[:, N], offset_in_own_frame=True)
    return pos * skel.to_metres


def find_asf_for(amc_path: str | Path) -> Path:
    """The actor's ASF next to an AMC: ``HDM_bd_xxx.amc`` -> ``HDM_bd.asf``, else the only ``*.asf``."""
    amc_path = Path(amc_path)
    parts = amc_path.stem.split("_")
    folder = amc_path.parent
    for k in range(len(parts) - 1, 0, -1):
        for ext in (".asf", ".ASF"):
            cand = folder / ("_".join(parts[:k]) + ext)
            if cand.is_file():
                return cand
    asfs = sorted(folder.glob("*.asf")) + sorted(folder.glob("*.ASF"))
    if len(asfs) == 1:
        return asfs[0]
    raise InputMissingError(f"{amc_path}: no matching .asf next to it (found {len(asfs)}); pass --asf")


def load_amc_clip(amc_path: str | Path, asf_path: str | Path | None = None, fps: float | None = None) -> MocapClip:
    """Parse + FK an AMC clip.  The frame rate comes from a ``_<fps>`` file-name
    suffix (HDM05: ``_120``), else ``fps``, else 120."""
    amc_path = Path(amc_path)
    skel = parse_asf(asf_path if asf_path is not None else find_asf_for(amc_path))
    pos = amc_fk(skel, parse_amc(amc_path, skel))
    if fps is None:
        tail = amc_path.stem.rsplit("_", 1)[-1]
        fps = float(tail) if tail.isdigit() else 120.0
    with open(skel.path, "rb") as fh:
        digest = hashlib.sha1(fh.read()).hexdigest()[:8]
    return MocapClip(str(amc_path), "amc", fps, skel.names, pos.astype(np.float32), f"asf:{skel.skeleton_id}:{digest}")
