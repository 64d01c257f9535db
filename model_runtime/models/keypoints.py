"""The IK keypoint sets (paper Sec. 3.3) computed from a body model.

* body: :data:`skeleton.BODY_KEYPOINT_NAMES` (24) = 15 SMPL-H joints + 9 mesh
  vertices (nose, eyes, ears, heels, big toes);
* hand: :data:`skeleton.HAND21_NAMES` (21) = wrist + finger joints 1..3 + tip
  vertices ("*4").

Vertex ids come from ``BodyModel.extras["keypoint_vertices"]`` (name -> id).

Two ways to get them:

* :func:`body_keypoints` / :func:`hand_keypoints` pick them from a full forward
  pass (``joints (B, 52, 3)``, ``vertices (B, V, 3)``);
* :class:`PartKinematics` computes them *without* skinning the whole mesh: it
  keeps only the joints of one part (22 body joints, or the right wrist and its
  15 finger joints) and only the keypoint vertices' rows of the model, so the
  IK training loss and the retargeting run at joint-count cost.  Both give the
  same numbers (tested).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from ..core import backend, lbs
from ..core.errors import ModelFileError
from ..core.skeleton import (
    BODY_IDX, BODY_KEYPOINT_NAMES, BODY_KEYPOINTS_BASIC, HAND21_NAMES, JOINT_NAMES, NUM_BETAS,
    PARENTS, RIGHT_HAND_IDX, RIGHT_WRIST, Side
)

Part = Literal["body", "hand"]
NUM_BODY_KP = len(BODY_KEYPOINT_NAMES)
NUM_HAND_KP = len(HAND21_NAMES)


def keypoint_vertex_ids(model) -> dict[str, int]:
    """``{name: vertex id}`` of the model's keypoint vertices.

    Built-in asset: :attr:`BodyModel.keypoint_vertices` (npz name/id arrays);
    official SMPL-H: ``extras["keypoint_vertices"]`` (a dict).
    """
    ids = dict(getattr(model, "keypoint_vertices", None) or {})
    kv = model.extras.get("keypoint_vertices")
    if isinstance(kv, dict):
        ids.update({str(k): int(v) for k, v in kv.items()})
    if not ids:
        raise ModelFileError(model.source or "<body model>", "keypoint_vertices", "is missing (needed for IK keypoints)")
    return ids


def _body_spec(vids: dict[str, int], src: str) -> tuple[np.ndarray, np.ndarray]:
    joints = np.array([JOINT_NAMES.index(n) for n in BODY_KEYPOINTS_BASIC])
    try:
        verts = np.array([vids[n] for n in BODY_KEYPOINT_NAMES[len(BODY_KEYPOINTS_BASIC):]])
    except KeyError as e:
        raise ModelFileError(src, "keypoint_vertices", f"has no vertex for {e.args[0]!r}") from None
    return joints, verts


def _hand_names(side: str) -> list[str]:
    return [f"{side}_wrist"] + [f"{side}_{n}" for n in HAND21_NAMES[1:]]


def body_keypoints(joints, vertices, kp_vertex_ids: dict[str, int]):
    """``(B, 52, 3)`` joints + ``(B, V, 3)`` vertices -> ``(B, 24, 3)`` in BODY_KEYPOINT_NAMES order."""
    j_idx, v_idx = _body_spec(kp_vertex_ids, "<kp_vertex_ids>")
    return backend.cat([joints[:, j_idx], vertices[:, v_idx]], axis=1)


def hand_keypoints(joints, vertices, kp_vertex_ids: dict[str, int], side: Side):
    """``(B, 52, 3)`` joints + ``(B, V, 3)`` vertices -> ``(B, 21, 3)`` in HAND21_NAMES order for one side."""
    names = _hand_names(side)
    is_tip = np.array([n.endswith("4") for n in names])
    j_idx = [JOINT_NAMES.index(n) for n, t in zip(names, is_tip) if not t]
    v_idx = [kp_vertex_ids[n] for n, t in zip(names, is_tip) if t]
    order = np.argsort(np.concatenate([np.nonzero(~is_tip)[0], np.nonzero(is_tip)[0]]))
    return backend.cat([joints[:, j_idx], vertices[:, v_idx]], axis=1)[:, order]


class PartKinematics:
    """Differentiable keypoints of one part at joint-count cost (torch).

    ``part="body"``: the 22 body joints (root = pelvis) -> 24 body keypoints.
    ``part="hand"``: the right wrist + its 15 finger joints (root = wrist,
    whose rotation is the wrist's *global* rotation) -> 21 hand keypoints.
    Left hands are handled by mirroring (see :mod:`model_runtime.ik.inference`).

    Outputs are root-relative (root joint at the origin), times ``scale``.
    Keypoint vertices are skinned with their weights restricted to the part's
    joints (renormalised; the dropped mass is checked to be < 5 %).
    """

    def __init__(self, model, part: Part, device="cpu", dtype=None):
        import torch

        self.part = part
        dtype = dtype or torch.float32
        vids = keypoint_vertex_ids(model)
        src = model.source or "<body model>"
        if part == "body":
            jidx = BODY_IDX.copy()
            names = list(BODY_KEYPOINT_NAMES)
            kp_is_joint = np.array([n in BODY_KEYPOINTS_BASIC for n in names])
        elif part == "hand":
            jidx = np.concatenate([[RIGHT_WRIST], RIGHT_HAND_IDX])
            names = _hand_names("right")
            kp_is_joint = np.array([not n.endswith("4") for n in names])
        else:
            raise ValueError(f"part must be 'body' or 'hand', got {part!r}")
        try:
            kp_vid = np.array([vids[n] for n, j in zip(names, kp_is_joint) if not j], dtype=np.int64)
        except KeyError as e:
            raise ModelFileError(src, "keypoint_vertices", f"has no vertex for {e.args[0]!r}") from None
        g2l = {int(j): i for i, j in enumerate(jidx)}
        kp_joint_local = np.array([g2l[JOINT_NAMES.index(n)] for n, j in zip(names, kp_is_joint) if j])
        W = model.weights[kp_vid][:, jidx].astype(np.float64)
        kept = W.sum(1)
        if np.any(kept < 0.95):
            bad = [int(v) for v in kp_vid[kept < 0.95]]
            raise ModelFileError(src, "weights", f"keypoint vertices {bad} are skinned mostly outside the {part}")
        W = W / kept[:, None]
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
        j_template, j_dirs = model.joint_shape_basis()                                  # the body's rest joints
        self.J_template = t(j_template[jidx])                                           # (Jp, 3)
        self.J_dirs = t(j_dirs[jidx])                                                   # (Jp, 3, K)
        self.V_template = t(model.v_template[kp_vid])                                   # (Kv, 3)
        self.V_dirs = t(model.shapedirs[kp_vid][..., :NUM_BETAS])                       # (Kv, 3, K)
        self.V_weights = t(W)                                                           # (Kv, Jp)
        self._order = torch.as_tensor(np.argsort(np.concatenate([np.nonzero(kp_is_joint)[0], np.nonzero(~kp_is_joint)[0]])), device=device)
        self._kpj = torch.as_tensor(kp_joint_local, device=device)
        self.joint_idx = jidx                     # (Jp,) indices into the 52 SMPL-H joints
        self.parents = np.array([-1] + [g2l[int(PARENTS[j])] for j in jidx[1:]])
        self.num_joints = len(jidx)
        self.num_keypoints = len(kp_is_joint)

    def rest_joints(self, betas):
        """Rest joint positions ``(B, Jp, 3)`` for ``betas (B, <=16)``: the part's rows of
        :meth:`BodyModel.rest_joints <model_runtime.models.body_model.BodyModel.rest_joints>`."""
        return lbs.shape_blend(self.J_template, self.J_dirs, betas)

    def forward(self, rot_mats, betas, scale=None, with_globals: bool = False):
        """rot_mats ``(B, Jp, 3, 3)`` relative (root: global); betas ``(B, <=16)``;
        scale ``(B,)`` or None.  Returns ``(joints (B, Jp, 3), keypoints (B, K, 3))``,
        root-relative, plus the global joint rotations ``(B, Jp, 3, 3)`` if ``with_globals``."""
        import torch

        joints, G, t = lbs.forward_kinematics_rt(rot_mats, self.rest_joints(betas), self.parents)
        v_rest = lbs.shape_blend(self.V_template, self.V_dirs, betas)                      # (B, Kv, 3)
        Gv = torch.einsum("vj,bjmn->bvmn", self.V_weights, G)                              # (B, Kv, 3, 3)
        tv = torch.einsum("vj,bjm->bvm", self.V_weights, t)                                 # (B, Kv, 3)
        verts = (Gv @ v_rest[..., None])[..., 0] + tv
        root = joints[:, :1]
        kps = torch.cat([joints[:, self._kpj], verts], dim=1)[:, self._order] - root
        joints = joints - root
        if scale is not None:
            kps = kps * scale[:, None, None]
            joints = joints * scale[:, None, None]
        if with_globals:
            return joints, kps, G
        return joints, kps

    __call__ = forward
