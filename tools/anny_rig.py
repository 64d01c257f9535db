"""anny's 104-bone rig seen as the 52-joint SMPL-H tree (build/test time only; needs ``anny``).

What lives here:

* :data:`ANNY_TO_SMPLH` - every bone of anny's default ``"anny"`` rig merged into
  one SMPL-H joint (twist bones, metacarpals, toes, eyes... fold into their joint);
* :data:`JOINT_ANCHOR_BONES` - the anny bones whose (posed) heads define each
  SMPL-H joint position (the J_regressor is fitted to reproduce them);
* frame conversion between anny (metres, Z up, faces -Y, left = +X) and the
  runtime's model frame (metres, Y up, faces +Z, left = +X);
* :func:`tpose_world_rotations` - per-bone world rotations that take anny's
  A-pose rest to an SMPL-H-like T-pose, computed per shape (batched);
* :func:`pose_anny` - anny's *own* forward pass driven by per-bone world
  rotations (``"world-orient"`` parameterisation), used to bake the T-pose and,
  in the tests, to compare our LBS with anny's.

Shapes: ``B`` batch, ``NB = 104`` anny bones, ``V`` vertices.
"""
from __future__ import annotations

from typing import Final

import numpy as np
import torch

from model_runtime.core.skeleton import JOINT_NAMES, PARENTS

# --- anny bone -> SMPL-H joint (left side and centre written out; right side mirrored) ---------
_ANNY_TO_SMPLH_CENTRE_AND_LEFT: Final[dict[str, str]] = {
    # pelvis group: root, the two hip-offset bones and the two lowest spine bones
    "root": "pelvis", "spine05": "pelvis", "spine04": "pelvis", "pelvis.L": "pelvis",
    "spine03": "spine1", "spine02": "spine2", "spine01": "spine3",
    "neck01": "neck", "neck02": "neck", "neck03": "neck",
    "head": "head", "eye.L": "head",
    # leg
    "upperleg01.L": "left_hip", "upperleg02.L": "left_hip",
    "lowerleg01.L": "left_knee", "lowerleg02.L": "left_knee",
    "foot.L": "left_ankle",
    **{f"toe{t}-{s}.L": "left_foot" for t in range(1, 6) for s in (1, 2, 3) if not (t == 1 and s == 3)},
    # arm
    "clavicle.L": "left_collar", "shoulder01.L": "left_collar",
    "upperarm01.L": "left_shoulder", "upperarm02.L": "left_shoulder",
    "lowerarm01.L": "left_elbow", "lowerarm02.L": "left_elbow",
    "wrist.L": "left_wrist",
    "metacarpal1.L": "left_wrist", "metacarpal2.L": "left_wrist",
    "metacarpal3.L": "left_wrist", "metacarpal4.L": "left_wrist",
    # hand: MakeHuman finger1 = thumb, 2 = index, 3 = middle, 4 = ring, 5 = pinky
    "finger1-1.L": "left_thumb1", "finger1-2.L": "left_thumb2", "finger1-3.L": "left_thumb3",
    "finger2-1.L": "left_index1", "finger2-2.L": "left_index2", "finger2-3.L": "left_index3",
    "finger3-1.L": "left_middle1", "finger3-2.L": "left_middle2", "finger3-3.L": "left_middle3",
    "finger4-1.L": "left_ring1", "finger4-2.L": "left_ring2", "finger4-3.L": "left_ring3",
    "finger5-1.L": "left_pinky1", "finger5-2.L": "left_pinky2", "finger5-3.L": "left_pinky3",
}


def _mirror_bone(name: str) -> str:
    return name[:-2] + ".R" if name.endswith(".L") else name


def _mirror_joint(name: str) -> str:
    return "right_" + name[5:] if name.startswith("left_") else name


ANNY_TO_SMPLH: Final[dict[str, str]] = {
    **_ANNY_TO_SMPLH_CENTRE_AND_LEFT,
    **{_mirror_bone(b): _mirror_joint(j) for b, j in _ANNY_TO_SMPLH_CENTRE_AND_LEFT.items() if b.endswith(".L")},
}

# --- bones whose rest/posed heads define each joint's location (mean of the heads) -------------
_ANCHORS_CENTRE_AND_LEFT: Final[dict[str, tuple[str, ...]]] = {
    "pelvis": ("root",), "spine1": ("spine03",), "spine2": ("spine02",), "spine3": ("spine01",),
    "neck": ("neck01",), "head": ("head",),
    "left_hip": ("upperleg01.L",), "left_knee": ("lowerleg01.L",), "left_ankle": ("foot.L",),
    # SMPL's foot joint sits at the ball of the foot: mean of the five toe bases
    "left_foot": tuple(f"toe{t}-1.L" for t in range(1, 6)),
    "left_collar": ("clavicle.L",), "left_shoulder": ("upperarm01.L",),
    "left_elbow": ("lowerarm01.L",), "left_wrist": ("wrist.L",),
    **{f"left_{f}{k}": (f"finger{i}-{k}.L",) for i, f in enumerate(("thumb", "index", "middle", "ring", "pinky"), 1)
       for k in (1, 2, 3)},
}
JOINT_ANCHOR_BONES: Final[dict[str, tuple[str, ...]]] = {
    **_ANCHORS_CENTRE_AND_LEFT,
    **{_mirror_joint(j): tuple(_mirror_bone(b) for b in bs) for j, bs in _ANCHORS_CENTRE_AND_LEFT.items()
       if j.startswith("left_")},
}

# --- frames -------------------------------------------------------------------------------------
# p_model = ANNY_TO_MODEL @ p_anny : anny (x left, y back, z up) -> model (x left, y up, z front)
ANNY_TO_MODEL: Final[np.ndarray] = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
ANNY_TO_MODEL.setflags(write=False)

# --- T-pose targets (anny frame) ----------------------------------------------------------------
_X, _NEG_X, _DOWN = (1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)


def _tpose_targets() -> dict[str, tuple[tuple[str, str | None], tuple[float, float, float] | None]]:
    """bone -> ((segment start bone, segment end bone or None = the bone's own axis), target direction).

    A target of ``None`` means "world orientation of the rest pose" (keeps the feet flat).
    Bones not listed keep their rest orientation relative to their parent.
    """
    out: dict = {}
    for side, lateral in ((".L", _X), (".R", _NEG_X)):
        out[f"upperarm01{side}"] = ((f"upperarm01{side}", f"lowerarm01{side}"), lateral)
        out[f"lowerarm01{side}"] = ((f"lowerarm01{side}", f"wrist{side}"), lateral)
        out[f"wrist{side}"] = ((f"wrist{side}", f"finger3-1{side}"), lateral)
        for f in (2, 3, 4, 5):   # index..pinky straight along the arm; the thumb keeps its rest pose
            out[f"finger{f}-1{side}"] = ((f"finger{f}-1{side}", f"finger{f}-2{side}"), lateral)
            out[f"finger{f}-2{side}"] = ((f"finger{f}-2{side}", f"finger{f}-3{side}"), lateral)
            out[f"finger{f}-3{side}"] = ((f"finger{f}-3{side}", None), lateral)
        out[f"upperleg01{side}"] = ((f"upperleg01{side}", f"lowerleg01{side}"), _DOWN)
        out[f"lowerleg01{side}"] = ((f"lowerleg01{side}", f"foot{side}"), _DOWN)
        out[f"foot{side}"] = ((f"foot{side}", None), None)
    return out


TPOSE_TARGETS: Final = _tpose_targets()


def check_bone_map(bone_labels: list[str], bone_parents: list[int]) -> np.ndarray:
    """Validate :data:`ANNY_TO_SMPLH` against anny's rig; returns ``(NB,)`` SMPL-H joint index per bone.

    Every bone must be mapped, and the map must respect both trees: a bone's
    parent maps to the bone's own joint or to that joint's SMPL-H parent.
    """
    missing = [b for b in bone_labels if b not in ANNY_TO_SMPLH]
    if missing:
        raise ValueError(f"anny bones without an SMPL-H joint: {missing}")
    idx = np.array([JOINT_NAMES.index(ANNY_TO_SMPLH[b]) for b in bone_labels])
    for c, p in enumerate(bone_parents):
        if p < 0:
            continue
        if idx[p] != idx[c] and idx[p] != PARENTS[idx[c]]:
            raise ValueError(f"bone {bone_labels[c]} -> {JOINT_NAMES[idx[c]]} but its parent "
                             f"{bone_labels[p]} -> {JOINT_NAMES[idx[p]]}, not that joint's SMPL-H parent")
    if set(idx.tolist()) != set(range(len(JOINT_NAMES))):
        raise ValueError("some SMPL-H joints receive no anny bone")
    return idx


def create_anny(local_changes="all", facial_actions="all"):
    """The anny model used for every asset: all phenotypes, plain (dense) LBS, float64, CPU."""
    import anny

    return anny.Anny(local_changes=local_changes, facial_actions=facial_actions, phenotypes="all",
                     skinning_method="lbs")


def minimal_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotation taking directions ``a (..., 3)`` onto ``b (..., 3)`` -> ``(..., 3, 3)``.

    Rodrigues form ``I + [v]x + [v]x^2 / (1 + c)``; ``a`` and ``b`` must not be opposite.
    """
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    v = torch.linalg.cross(a, b)
    c = (a * b).sum(-1)[..., None, None]
    z = torch.zeros_like(v[..., 0])
    K = torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                     torch.stack([v[..., 2], z, -v[..., 0]], -1),
                     torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand_as(K)
    return eye + K + K @ K / (1.0 + c)


def tpose_world_rotations(model, rest: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-bone world rotations ``(B, NB, 3, 3)`` taking anny's rest pose to the T-pose.

    ``rest`` is ``model.get_rest_model(coeffs)`` (heads ``(B, NB, 3)``, poses
    ``(B, NB, 4, 4)``).  Bones are visited parent-first; a bone with a target in
    :data:`TPOSE_TARGETS` gets the smallest extra rotation that takes its
    (parent-rotated) segment onto the target direction, so an elbow is
    straightened about its own flexion axis; other bones inherit their parent's
    rotation.  (A loop over 104 bones, batched over shapes; build time only.)
    """
    heads, poses = rest["rest_bone_heads"], rest["rest_bone_poses"]
    labels, parents = list(model.bone_labels), list(model.bone_parents)
    Bsz, NB = heads.shape[:2]
    eye = torch.eye(3, dtype=heads.dtype).expand(Bsz, 3, 3)
    G: list[torch.Tensor] = [eye] * NB
    for c in range(NB):   # anny's bone list is topologically sorted
        par = G[parents[c]] if parents[c] >= 0 else eye
        tgt = TPOSE_TARGETS.get(labels[c])
        if tgt is None:
            G[c] = par
            continue
        (start, end), direction = tgt
        if direction is None:
            G[c] = eye
            continue
        i0 = labels.index(start)
        seg = heads[:, labels.index(end)] - heads[:, i0] if end else poses[:, i0, :3, 1]
        seg = (par @ seg[..., None])[..., 0]
        target = torch.tensor(direction, dtype=heads.dtype).expand_as(seg)
        G[c] = minimal_rotation(seg, target) @ par
    return torch.stack(G, 1)


def pose_anny(model, coeffs: torch.Tensor, world_rot: torch.Tensor) -> dict[str, torch.Tensor]:
    """anny's own forward pass with every bone given a world rotation (anny frame).

    coeffs: ``(B, C)`` blendshape coefficients (``model._get_phenotype_blendshape_coefficients``);
    world_rot: ``(B, NB, 3, 3)``: bone c is rotated by ``world_rot[:, c]`` about its
    head, its head following its parent (``"world-orient"``).  Returns anny's dict
    (``vertices (B, V, 3)``, ``bone_poses (B, NB, 4, 4)`` whose translations are the
    posed heads, ``rest_bone_heads``...).
    """
    rest = model.get_rest_model(coeffs)
    R = rest["rest_bone_poses"]
    Bsz = max(R.shape[0], world_rot.shape[0])
    D = torch.zeros((Bsz, R.shape[1], 4, 4), dtype=R.dtype)
    D[..., :3, :3] = world_rot @ R[..., :3, :3]
    D[..., :3, 3] = R[..., :3, 3]     # only the root's translation is read: it stays in place
    D[..., 3, 3] = 1.0
    # the base class's forward takes raw blendshape coefficients (Anny.forward takes phenotypes)
    from anny.models.rigged_model import RiggedModelWithLinearBlendShapes

    return RiggedModelWithLinearBlendShapes.forward(model, D, coeffs, pose_parameterization="world-orient")


def blendshape_coeffs(model, phenotypes: torch.Tensor, local_changes: torch.Tensor | None = None,
                      facial_actions: torch.Tensor | None = None) -> torch.Tensor:
    """anny blendshape coefficients ``(B, C)`` from phenotypes ``(B, 11)`` (``model.phenotype_labels``
    order), local changes ``(B, L)`` and facial actions ``(B, 52)`` (zeros if None)."""
    Bsz = phenotypes.shape[0]
    z = lambda n: torch.zeros((Bsz, n), dtype=phenotypes.dtype)  # noqa: E731
    lc = z(len(model.local_change_labels)) if local_changes is None else local_changes
    fa = z(len(model.facial_action_labels)) if facial_actions is None else facial_actions
    return model._get_phenotype_blendshape_coefficients(phenotypes, lc, fa)


# The reference phenotype: the built-in template (beta = 0) is anny at these values,
# T-posed.  Sampling for the shape space is centred on it.
REFERENCE_PHENOTYPE: Final[dict[str, float]] = {
    "gender": 0.5, "age": 0.75, "muscle": 0.5, "weight": 0.5, "height": 0.5, "proportions": 0.5,
    "cupsize": 0.5, "firmness": 0.5, "african": 1 / 3, "asian": 1 / 3, "caucasian": 1 / 3,
}


def reference_phenotype(model) -> torch.Tensor:
    """``(1, 11)`` :data:`REFERENCE_PHENOTYPE` in ``model.phenotype_labels`` order."""
    return torch.tensor([[REFERENCE_PHENOTYPE[k] for k in model.phenotype_labels]], dtype=model.dtype)


def tposed(model, coeffs: torch.Tensor, extra_world_rot: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """anny posed into the T-pose (optionally followed by ``extra_world_rot (B, NB, 3, 3)``)."""
    rest = model.get_rest_model(coeffs)
    G = tpose_world_rotations(model, rest)
    if extra_world_rot is not None:
        G = extra_world_rot @ G
    return pose_anny(model, coeffs, G)
