"""The rendered person: the merged full-body model (body + bridged 3DMM face) prepared for the
synthetic renderer, with the label definitions on its mesh.

:class:`SynthAvatar` holds, on one device, everything per-vertex / per-triangle that does not
change between images: the merged triangles, each triangle's body part (for clothing), its
corner UVs (the body's ``extra_uv`` / ``extra_face_uv_ids``), eyeball and scalp masks, and the
label points as merged-mesh vertex ids (body keypoint vertices, fingertips, iBUG-68, the
MediaPipe-468 barycentric points) with a per-keypoint surface radius for visibility.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import torch

from ..core.errors import ModelFileError
from ..core.skeleton import BODY_KEYPOINT_NAMES, BODY_KEYPOINTS_BASIC, HAND21_NAMES, JOINT_NAMES
from ..models.full_model import FullBodyModel

#: body parts a triangle can belong to (clothing is assigned per part)
PARTS: Final[tuple[str, ...]] = ("skin", "torso", "upper_arm", "forearm", "thigh", "shin", "foot",
                                 "scalp", "eye", "occluder")
PART = {n: i for i, n in enumerate(PARTS)}
_JOINT_PART: Final[dict[str, str]] = {
    "pelvis": "torso", "spine1": "torso", "spine2": "torso", "spine3": "torso",
    "left_collar": "torso", "right_collar": "torso",
    "left_shoulder": "upper_arm", "right_shoulder": "upper_arm",
    "left_elbow": "forearm", "right_elbow": "forearm",
    "left_hip": "thigh", "right_hip": "thigh", "left_knee": "shin", "right_knee": "shin",
    "left_ankle": "foot", "right_ankle": "foot", "left_foot": "foot", "right_foot": "foot",
}
#: eyeball colours (linear RGB) by angle (deg) about the eyeball's forward axis
EYE_COLOURS: Final[tuple[tuple[float, tuple[float, float, float]], ...]] = (
    (11.0, (0.01, 0.01, 0.01)), (30.0, (0.09, 0.045, 0.02)), (180.0, (0.70, 0.66, 0.62)))


def _hand_names(side: str) -> list[str]:
    return [f"{side}_wrist"] + [f"{side}_{n}" for n in HAND21_NAMES[1:]]


@dataclass(frozen=True)
class SynthAvatar:
    """Device tensors of one :class:`FullBodyModel` for :mod:`model_runtime.synth.engine`.

    faces ``(F, 3)`` long merged triangles; vertex_part ``(Vm,)`` / tri_part ``(F,)`` long index
    into :data:`PARTS` (a pixel takes the part of its triangle's nearest corner, so garment edges
    follow vertices instead of whole triangles);
    tri_uv ``(F, 3, 2)`` corner UVs (0 where the mesh has none); tri_height ``(F,)`` rest height
    of the triangle above the ears (m, scalp triangles; hair is drawn above a per-image level);
    eye_colour ``(Vm, 3)`` linear colours of eyeball vertices (0 elsewhere), eye_vertex ``(Vm,)``
    bool; body_joint_ids ``(15,)`` / body_vertex_ids ``(9,)``: the 24 body keypoints as joints
    then merged vertices (order :data:`BODY_KEYPOINT_NAMES`); hand_joint_ids ``(2, 16)``,
    hand_tip_ids ``(2, 5)`` (left, right) for the 21 :data:`HAND21_NAMES`; lm68_ids ``(68,)``;
    mp468_ids ``(468, 3)`` + mp468_bary ``(468, 3)``; body_radius ``(24,)`` / hand_radius ``(21,)``
    depth tolerance (m) of visibility: how far the visible surface may lie in front of the point;
    tri_hand ``(F,)`` long: 0 / 1 for triangles of the left / right hand (their first corner's
    dominant skinning joint is that wrist or a finger joint), -1 elsewhere (what hid a hand point);
    cull: the back-face sign for :func:`~model_runtime.synth.raster.rasterize_batch` (0 when the
    mesh's winding is not consistent enough to drop back faces, see :func:`backface_sign`).
    """

    model: FullBodyModel
    device: torch.device
    faces: torch.Tensor
    vertex_part: torch.Tensor
    tri_part: torch.Tensor
    tri_uv: torch.Tensor
    tri_height: torch.Tensor
    eye_colour: torch.Tensor
    eye_vertex: torch.Tensor
    body_joint_ids: torch.Tensor
    body_vertex_ids: torch.Tensor
    hand_joint_ids: torch.Tensor
    hand_tip_ids: torch.Tensor
    lm68_ids: torch.Tensor
    mp468_ids: torch.Tensor
    mp468_bary: torch.Tensor
    body_radius: torch.Tensor
    hand_radius: torch.Tensor
    skin_mean: torch.Tensor
    tri_hand: torch.Tensor
    cull: int = 0

    @property
    def num_vertices(self) -> int:
        return self.model.num_vertices

    # ------------------------------------------------------------------ label points
    def body_points(self, verts: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """``(B, Vm, 3)``, ``(B, 52, 3)`` -> 24 body keypoints ``(B, 24, 3)`` (BODY_KEYPOINT_NAMES)."""
        return torch.cat([joints[:, self.body_joint_ids], verts[:, self.body_vertex_ids]], 1)

    def hand_points(self, verts: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """-> ``(B, 2, 21, 3)`` [left, right] in HAND21_NAMES order (wrist, thumb1..4, ..., pinky1..4)."""
        j = joints[:, self.hand_joint_ids]                    # (B, 2, 16, 3): wrist + 5 x (1, 2, 3)
        t = verts[:, self.hand_tip_ids]                        # (B, 2, 5, 3)
        B = j.shape[0]
        fingers = torch.cat([j[:, :, 1:].reshape(B, 2, 5, 3, 3), t[:, :, :, None]], 3)   # (B, 2, 5, 4, 3)
        return torch.cat([j[:, :, :1], fingers.reshape(B, 2, 20, 3)], 2)

    def face68_points(self, verts: torch.Tensor) -> torch.Tensor:
        """-> ``(B, 68, 3)`` iBUG-68 landmarks."""
        return verts[:, self.lm68_ids]

    def face468_points(self, verts: torch.Tensor) -> torch.Tensor:
        """-> ``(B, 468, 3)`` MediaPipe face-mesh points (barycentric on the 3DMM triangles)."""
        return (verts[:, self.mp468_ids] * self.mp468_bary[None, :, :, None]).sum(-2)


def backface_sign(rest: np.ndarray, faces: np.ndarray, size: int = 160) -> int:
    """The screen-space winding sign of back faces of the mesh ``rest (V, 3)``, ``faces (F, 3)``
    (model space, Y up, facing +Z), found by rendering it from the front, the back and the side:
    the sign whose culling leaves every view's silhouette and visible triangles unchanged, or 0."""
    from .raster import rasterize_batch

    v = torch.as_tensor(rest, dtype=torch.float32)
    v = v - v.mean(0)
    views = []
    for yaw in (0.0, np.pi, np.pi / 2):
        c, s_ = np.cos(yaw), np.sin(yaw)
        R = torch.tensor([[c, 0, s_], [0, 1, 0], [-s_, 0, c]], dtype=torch.float32)
        cam = (v @ R.T) * torch.tensor([1.0, -1.0, -1.0]) + torch.tensor([0.0, 0.0, 3.0])
        f = size * 1.2
        views.append(torch.cat([cam[:, :2] / cam[:, 2:] * f + size / 2, cam[:, 2:]], -1))
    px = torch.stack(views)
    fa = torch.as_tensor(faces, dtype=torch.long)
    ref = rasterize_batch(px, fa, size, size).face_id
    for sign in (1, -1):
        got = rasterize_batch(px, fa, size, size, cull=sign).face_id
        if float((got == ref).float().mean()) > 0.999:
            return sign
    return 0


def build_avatar(model: FullBodyModel, device="cpu") -> SynthAvatar:
    """Prepare ``model`` for rendering on ``device`` (see :class:`SynthAvatar`)."""
    from ..face.correspondence import correspondence_for
    from ..models.keypoints import keypoint_vertex_ids

    dev = torch.device(device)
    body, face = model.body, model.face
    src = body.source or "<body model>"
    rest = model.rest_vertices().astype(np.float64)                       # (Vm, 3)
    Vb = model.num_body_vertices
    faces = model.merged_faces.astype(np.int64)
    # --- label vertices: body keypoint vertices as the nearest merged rest vertex
    vids = keypoint_vertex_ids(body)

    def merged_id(name: str) -> int:
        if name not in vids:
            raise ModelFileError(src, "keypoint_vertices", f"has no vertex for {name!r}")
        # a handful of queries: brute force (numpy only, so the engine runs on a bare GPU machine)
        dist = np.linalg.norm(rest - body.v_template[vids[name]].astype(np.float64), axis=1)
        i = int(np.argmin(dist))
        d = float(dist[i])
        if d > 0.01:
            raise ModelFileError(src, "keypoint_vertices", f"vertex of {name!r} is {1000 * d:.0f} mm from the merged mesh")
        return int(i)

    ext = BODY_KEYPOINT_NAMES[len(BODY_KEYPOINTS_BASIC):]
    body_j = np.array([JOINT_NAMES.index(n) for n in BODY_KEYPOINTS_BASIC])
    body_v = np.array([merged_id(n) for n in ext])
    hand_j = np.array([[JOINT_NAMES.index(n) for n in _hand_names(s) if not n.endswith("4")] for s in ("left", "right")])
    hand_t = np.array([[merged_id(n) for n in _hand_names(s) if n.endswith("4")] for s in ("left", "right")])
    lm = np.asarray(face.landmarks68)
    if (lm < 0).any():
        raise ModelFileError(face.source or "<face model>", "landmarks68", "has missing points (-1); the synthetic labels need all 68")
    lm68 = lm + Vb
    corr = correspondence_for(face)
    mp_ids = corr.vertex_ids.astype(np.int64) + Vb
    # --- visibility radii: 1.2 x the distance from the joint to the nearest rest surface + 1 cm
    rest_j = body.rest_joints()                                           # (52, 3)
    dist_j = np.sqrt(((rest_j.astype(np.float64)[:, None] - rest[None]) ** 2).sum(-1).min(1))   # (52,)
    body_r = np.concatenate([1.2 * dist_j[body_j] + 0.01, np.full(len(body_v), 0.01)])
    hr = 1.2 * dist_j[hand_j[1]] + 0.01
    hand_r = np.zeros(21)
    hand_r[[i for i, n in enumerate(HAND21_NAMES) if not n.endswith("4")]] = hr
    hand_r[[i for i, n in enumerate(HAND21_NAMES) if n.endswith("4")]] = 0.01
    # --- parts per vertex (dominant joint), per triangle (its first corner)
    W = model.skin_weights()
    dom = W.argmax(1)
    vpart = np.array([PART[_JOINT_PART.get(JOINT_NAMES[j], "skin")] for j in dom])
    skin_comp = body.extras.get("skin_component")
    eye = np.zeros(len(rest), bool)
    eye_col = np.zeros((len(rest), 3), np.float32)
    head_y = rest_j[JOINT_NAMES.index("head"), 1]
    ear_y = 0.5 * (rest[merged_id("left_ear"), 1] + rest[merged_id("right_ear"), 1])
    if skin_comp is not None:
        off = ~np.asarray(skin_comp, bool)[model.body_vertex_ids]         # eyeballs and tongue (kept body ids)
        nose = rest[merged_id("nose")]
        for side in ("left_eye", "right_eye"):
            c = rest[merged_id(side)]
            ball = np.zeros(len(rest), bool)
            ball[:Vb] = off & (np.linalg.norm(rest[:Vb] - c, axis=1) < 0.025)
            if not ball.any():
                continue
            centre = rest[ball].mean(0)
            d = rest[ball] - centre
            ang = np.degrees(np.arccos(np.clip(d[:, 2] / np.maximum(np.linalg.norm(d, axis=1), 1e-9), -1, 1)))
            col = np.empty((len(d), 3), np.float32)
            for lim, rgb in reversed(EYE_COLOURS):
                col[ang <= lim] = rgb
            eye[ball], eye_col[ball] = True, col
        del nose
    vpart[eye] = PART["eye"]
    head = np.zeros(len(rest), bool)
    head[:Vb] = dom[:Vb] == JOINT_NAMES.index("head")
    scalp = head & ~eye & (rest[:, 1] > ear_y - 0.06)
    vpart[scalp] = PART["scalp"]
    tri_part = vpart[faces[:, 0]]
    vhand = np.full(len(rest), -1)
    for side, name in enumerate(("left", "right")):
        vhand[np.isin(dom, [JOINT_NAMES.index(n) for n in _hand_names(name) if n in JOINT_NAMES])] = side
    tri_hand = vhand[faces[:, 0]]
    tri_height = rest[faces].mean(1)[:, 1] - ear_y
    # --- corner UVs of kept body triangles (matched back to the body's triangle list)
    tri_uv = np.zeros((len(faces), 3, 2), np.float32)
    uv, uv_ids = body.extras.get("uv"), body.extras.get("face_uv_ids")
    if uv is not None and uv_ids is not None:
        V = body.num_vertices
        bf = body.faces.astype(np.int64)
        key_b = (bf[:, 0] * V + bf[:, 1]) * V + bf[:, 2]
        order = np.argsort(key_b)
        is_body = (faces < Vb).all(1)
        mf = model.body_vertex_ids[faces[is_body]].astype(np.int64)
        key_m = (mf[:, 0] * V + mf[:, 1]) * V + mf[:, 2]
        pos = np.clip(np.searchsorted(key_b, key_m, sorter=order), 0, len(order) - 1)
        hit = key_b[order[pos]] == key_m
        rows = np.nonzero(is_body)[0][hit]
        tri_uv[rows] = np.asarray(uv)[np.asarray(uv_ids)[order[pos[hit]]]]
    face_rgb = np.clip(face.mean_albedo, 0, 1)
    t = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)  # noqa: E731
    del head_y
    return SynthAvatar(
        model=model, device=dev, faces=t(faces, torch.long), vertex_part=t(vpart, torch.long), tri_part=t(tri_part, torch.long), tri_uv=t(tri_uv),
        tri_height=t(tri_height), eye_colour=t(eye_col), eye_vertex=t(eye, torch.bool),
        body_joint_ids=t(body_j, torch.long), body_vertex_ids=t(body_v, torch.long),
        hand_joint_ids=t(hand_j, torch.long), hand_tip_ids=t(hand_t, torch.long),
        lm68_ids=t(lm68, torch.long), mp468_ids=t(mp_ids, torch.long), mp468_bary=t(corr.bary),
        body_radius=t(body_r), hand_radius=t(hand_r), skin_mean=t(np.median(face_rgb, 0)), tri_hand=t(tri_hand, torch.long),
        cull=backface_sign(rest, faces))
