"""Per-pixel materials and lighting of the synthetic renders (linear RGB, device tensors).

Materials: a pixel takes the interpolated vertex albedo (skin tone on the body, the 3DMM albedo
on the face, eyeball colours), unless its triangle's body part is covered by a garment slot
(:data:`model_runtime.synth.sampling.SLOTS`) or it is scalp above the image's hairline.  A slot
is two colours mixed by a procedural pattern of the surface UVs (solid, stripes, checks, dots,
wavy noise).  Lighting: second-order SH irradiance (Eq. 5's basis) plus one coloured directional
light (Lambert); normals are flipped to face the camera (both windings are drawn).
"""
from __future__ import annotations

import math

import torch

from ..models.face_model import sh_basis
from .avatar import PART
from .raster import BatchRaster
from .sampling import PATTERNS, SLOTS


def pattern_value(uv: torch.Tensor, kind: torch.Tensor, freq: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Pattern in [0, 1] at ``uv (P, 2)`` for per-pixel ``kind (P,)`` (index into PATTERNS),
    ``freq (P,)`` cycles per UV unit and ``angle (P,)`` rad."""
    c, s = torch.cos(angle), torch.sin(angle)
    a = (uv[:, 0] * c + uv[:, 1] * s) * freq
    b = (-uv[:, 0] * s + uv[:, 1] * c) * freq
    stripes = (torch.sin(2 * math.pi * a) > 0).float()
    checks = ((torch.floor(a) + torch.floor(b)) % 2).float()
    dots = (((a - torch.floor(a) - 0.5) ** 2 + (b - torch.floor(b) - 0.5) ** 2) < 0.09).float()
    wavy = 0.5 + 0.5 * torch.sin(2 * math.pi * a + 2.0 * torch.sin(2 * math.pi * b * 0.37))
    out = torch.zeros_like(a)
    for i, val in enumerate((None, stripes, checks, dots, wavy)):
        if val is not None:
            out = torch.where(kind == i, val, out)
    assert len(PATTERNS) == 5
    return out


def slot_of_part(top: torch.Tensor, bottom: torch.Tensor, shoes: torch.Tensor, num_parts: int) -> torch.Tensor:
    """Garment slot per body part ``(N, num_parts)`` long (-1 = the vertex albedo).

    top: -1 no clothing, 0 none, 1 sleeveless, 2 short sleeves, 3 long sleeves;
    bottom: -1 none, 0 shorts, 1 long; shoes 0/1."""
    N = top.shape[0]
    t = torch.full((N, num_parts), -1, dtype=torch.long, device=top.device)
    top_s, bot_s, shoe_s = SLOTS.index("top"), SLOTS.index("bottom"), SLOTS.index("shoes")
    t[:, PART["torso"]] = torch.where(top >= 1, top_s, -1)
    t[:, PART["upper_arm"]] = torch.where(top >= 2, top_s, -1)
    t[:, PART["forearm"]] = torch.where(top >= 3, top_s, -1)
    t[:, PART["thigh"]] = torch.where(bottom >= 0, bot_s, -1)
    t[:, PART["shin"]] = torch.where(bottom >= 1, bot_s, -1)
    t[:, PART["foot"]] = torch.where(shoes >= 1, shoe_s, -1)
    return t


def shade(r: BatchRaster, verts: torch.Tensor, normals: torch.Tensor, albedo: torch.Tensor, faces: torch.Tensor,
          vertex_part: torch.Tensor, tri_uv: torch.Tensor, tri_height: torch.Tensor, num_person_faces: int,
          slots: torch.Tensor, p: dict, flip_normals: bool = True) -> torch.Tensor:
    """Linear colour ``(P, 3)`` of the covered pixels of ``r`` (in ``r.pix`` order).

    verts/normals/albedo ``(N, V, 3)`` camera space (person + occluder vertices); faces ``(F, 3)``;
    vertex_part ``(V,)`` body part per vertex (a pixel takes its nearest corner's), tri_uv
    ``(F, 3, 2)``, tri_height ``(F,)`` (occluder triangles after the
    first ``num_person_faces``, 4 per quad); slots ``(N, parts)`` from :func:`slot_of_part`;
    ``p``: batched parameters (slot_colour_a/b ``(N, S, 3)``, slot_pattern/freq/angle ``(N, S)``,
    hair_level ``(N,)``, sh ``(N, 3, 9)``, light_dir ``(N, 3)``, light_colour ``(N, 3)``).
    Pixels are shaded image by image (one contiguous run of ``r.pix`` each), so per-image
    parameters are scalars there instead of per-pixel gathers.  ``flip_normals``: turn normals
    that face away from the camera (needed when back faces are drawn; with back faces culled
    every drawn triangle faces the camera).
    """
    pack = torch.cat([normals, albedo] + ([verts] if flip_normals else []), -1)   # (N, V, 6 or 9)
    out = []
    o = 0
    for i, cnt in enumerate(r.image_counts()):                           # images, not pixels
        if cnt == 0:
            continue
        fid, w = r.fid[o:o + cnt], r.bary[o:o + cnt, :, None]
        o += cnt
        g = torch.einsum("pk,pkc->pc", r.bary[o - cnt:o], pack[i][faces[fid]])   # (P_i, 6 or 9)
        nor, alb = g[:, :3], g[:, 3:6]
        nor = nor / nor.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        if flip_normals:
            nor = torch.where(((nor * g[:, 6:9]).sum(-1, keepdim=True) > 0), -nor, nor)
        part = vertex_part[faces[fid].gather(1, w[:, :, 0].argmax(1, keepdim=True))[:, 0]]
        slot = slots[i][part]
        hair = (part == PART["scalp"]) & (tri_height[fid] > p["hair_level"][i])
        slot = torch.where(hair, SLOTS.index("hair"), slot)
        occ = fid >= num_person_faces
        slot = torch.where(occ, SLOTS.index("occluder0") + torch.div(fid - num_person_faces, 4, rounding_mode="floor"), slot)
        cloth = torch.nonzero(slot >= 0).flatten()
        if len(cloth):
            s = slot[cloth]
            uv = (w[cloth] * tri_uv[fid[cloth]]).sum(1)
            val = pattern_value(uv, p["slot_pattern"][i][s], p["slot_freq"][i][s], p["slot_angle"][i][s])[:, None]
            alb = alb.index_copy(0, cloth, p["slot_colour_a"][i][s] * (1 - val) + p["slot_colour_b"][i][s] * val)
        irr = sh_basis(nor) @ p["sh"][i].T                                # (P_i, 3)
        lam = (-(nor @ p["light_dir"][i])).clamp_min(0)
        irr = irr + lam[:, None] * p["light_colour"][i]
        out.append(alb.clamp(0, 1) * irr.clamp_min(0))
    return torch.cat(out) if out else torch.zeros(0, 3, device=verts.device)
