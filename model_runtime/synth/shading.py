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


def _pattern(kind: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pattern ``kind`` (index into PATTERNS, > 0) at rotated, scaled UV coordinates ``a, b (P,)``."""
    if kind == 1:                                                             # stripes
        return (torch.sin(2 * math.pi * a) > 0).float()
    if kind == 2:                                                             # checks
        return ((torch.floor(a) + torch.floor(b)) % 2).float()
    if kind == 3:                                                             # dots
        return (((a - torch.floor(a) - 0.5) ** 2 + (b - torch.floor(b) - 0.5) ** 2) < 0.09).float()
    return 0.5 + 0.5 * torch.sin(2 * math.pi * a + 2.0 * torch.sin(2 * math.pi * b * 0.37))   # wavy noise


def pattern_value(uv: torch.Tensor, kind: torch.Tensor, freq: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Pattern in [0, 1] at ``uv (P, 2)`` (or a pair of columns ``(P,)``) for per-pixel ``kind (P,)``
    (index into PATTERNS; 0 solid), ``freq (P,)`` cycles per UV unit and ``angle (P,)`` rad.
    Each pixel evaluates its own kind only."""
    assert len(PATTERNS) == 5
    us, vs = (uv[:, 0], uv[:, 1]) if isinstance(uv, torch.Tensor) else uv
    out = torch.zeros(kind.shape[0], device=kind.device)
    for k in range(1, len(PATTERNS)):                                         # kinds, not pixels
        sel = torch.nonzero(kind == k).flatten()
        if not len(sel):
            continue
        u, v, f, ang = (x.index_select(0, sel) for x in (us, vs, freq, angle))
        c, s_ = torch.cos(ang), torch.sin(ang)
        out.index_copy_(0, sel, _pattern(k, (u * c + v * s_) * f, (v * c - u * s_) * f))
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


_SH_MONOMIALS: list = []


def sh_monomials() -> torch.Tensor:
    """``T (9, 10)`` float64 with ``sh_basis(n) = T @ m(n)``, ``m = [1, x, y, z, xy, yz, xz, xx, yy, zz]``
    (the SH basis is a quadratic polynomial; solved once from :func:`sh_basis` itself)."""
    if not _SH_MONOMIALS:
        pts = torch.tensor([[0.3, -1.2, 0.7], [1.1, 0.4, -0.5], [-0.8, 0.9, 1.3], [0.2, 0.6, -1.4], [-1.5, -0.3, 0.1],
                            [0.9, -0.7, 0.8], [-0.4, 1.6, -0.9], [1.3, 1.0, 0.5], [-1.1, -1.3, -0.6], [0.5, 0.2, 1.7]],
                           dtype=torch.float64)
        x, y, z = pts.unbind(-1)
        M = torch.stack([torch.ones_like(x), x, y, z, x * y, y * z, x * z, x * x, y * y, z * z], -1)   # (10, 10)
        _SH_MONOMIALS.append(torch.linalg.solve(M, sh_basis(pts)).T.contiguous())                     # (9, 10)
    return _SH_MONOMIALS[0]


def _irradiance(nx: torch.Tensor, ny: torch.Tensor, nz: torch.Tensor, sh: torch.Tensor, light_dir: torch.Tensor,
                light_colour: torch.Tensor) -> list[torch.Tensor]:
    """Irradiance columns ``[(P,)] * 3`` of one image: SH ``sh (3, 9)`` (:func:`sh_basis`, as the
    polynomial :func:`sh_monomials`: monomials with zero weight are skipped) + Lambert of one
    light travelling along ``light_dir (3,)`` with ``light_colour (3,)``, at unit normals ``n*``."""
    coef = (sh.double().cpu() @ sh_monomials()).tolist()                     # (3, 10)
    mono = {1: lambda: nx, 2: lambda: ny, 3: lambda: nz, 4: lambda: nx * ny, 5: lambda: ny * nz,
            6: lambda: nx * nz, 7: lambda: nx * nx, 8: lambda: ny * ny, 9: lambda: nz * nz}
    cache: dict = {}
    d = light_dir.tolist()
    lam = (nx * -d[0] + ny * -d[1] + nz * -d[2]).clamp_min_(0)
    out = []
    for c, lc in enumerate(light_colour.tolist()):
        e = lam * lc + coef[c][0]
        for k in range(1, 10):
            if abs(coef[c][k]) > 1e-12:
                if k not in cache:
                    cache[k] = mono[k]()
                e.add_(cache[k], alpha=coef[c][k])
        out.append(e)
    return out


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
    All pixels of all images at once, as 1-D columns gathered with ``index_select`` (per-pixel
    ``(P, 3, C)`` gathers cost several times more); the lighting is a ``(P_i, 9) @ (9, 3)``
    product per image (its pixels are one contiguous run of ``r.pix``).
    ``flip_normals``: turn normals that face away from the camera (needed when back faces are
    drawn; with back faces culled every drawn triangle faces the camera).
    """
    dev = verts.device
    N, V = normals.shape[:2]
    P = int(r.fid.shape[0])
    if P == 0:
        return torch.zeros(0, 3, device=dev)
    take = lambda x, i: x.index_select(0, i)                               # noqa: E731
    fid = r.fid
    img = r.image_index
    fv = faces.index_select(0, fid)                                      # (P, 3) corner vertices
    gv = [fv[:, k] + img * V for k in range(3)]                          # rows of the (N*V) tables
    w = [r.bary[:, k].contiguous() for k in range(3)]

    def interp(table: torch.Tensor) -> list[torch.Tensor]:
        """``(N, V, C)`` -> C columns ``(P,)`` interpolated at the pixels."""
        cols = []
        for c in range(table.shape[-1]):
            col = table[..., c].reshape(-1).contiguous()
            cols.append(w[0] * take(col, gv[0]) + w[1] * take(col, gv[1]) + w[2] * take(col, gv[2]))
        return cols

    nx, ny, nz = interp(normals)
    inv = torch.rsqrt((nx * nx + ny * ny + nz * nz).clamp_min(1e-16))
    nx, ny, nz = nx * inv, ny * inv, nz * inv
    if flip_normals:
        vx, vy, vz = interp(verts)
        sgn = torch.where(nx * vx + ny * vy + nz * vz > 0, -1.0, 1.0)
        nx, ny, nz = nx * sgn, ny * sgn, nz * sgn
    alb = interp(albedo)                                                 # 3 columns (P,)
    # ---- material slot per pixel: the nearest corner's body part, hair above the hairline, occluders
    near = torch.where((w[0] >= w[1]) & (w[0] >= w[2]), fv[:, 0], torch.where(w[1] >= w[2], fv[:, 1], fv[:, 2]))
    part = take(vertex_part, near)
    n_parts = slots.shape[1]
    slot = take(slots.reshape(-1), img * n_parts + part)
    hair = (part == PART["scalp"]) & (take(tri_height, fid) > take(p["hair_level"], img))
    slot = torch.where(hair, SLOTS.index("hair"), slot)
    occ = fid >= num_person_faces
    slot = torch.where(occ, SLOTS.index("occluder0") + torch.div(fid - num_person_faces, 4, rounding_mode="floor"), slot)
    cloth = torch.nonzero(slot >= 0).flatten()
    if len(cloth):
        S = p["slot_pattern"].shape[1]
        row = take(img, cloth) * S + take(slot, cloth)                   # rows of the (N*S) slot tables
        fc = take(fid, cloth)
        wc = [take(w[k], cloth) for k in range(3)]
        uv = [sum(wc[k] * take(tri_uv[:, k, c].contiguous(), fc) for k in range(3)) for c in range(2)]
        val = pattern_value(uv, take(p["slot_pattern"].reshape(-1), row), take(p["slot_freq"].reshape(-1), row),
                            take(p["slot_angle"].reshape(-1), row))
        for c in range(3):
            ca = take(p["slot_colour_a"][..., c].reshape(-1), row)
            cb = take(p["slot_colour_b"][..., c].reshape(-1), row)
            alb[c] = alb[c].index_copy(0, cloth, ca + (cb - ca) * val)
    # ---- lighting: SH irradiance + one directional light, per image (scalars there)
    out = torch.empty(P, 3, device=dev)
    o = 0
    for i, cnt in enumerate(r.image_counts()):                           # images, not pixels
        if cnt:
            sl = slice(o, o + cnt)
            irr = _irradiance(nx[sl], ny[sl], nz[sl], p["sh"][i], p["light_dir"][i], p["light_colour"][i])
            for c in range(3):
                out[sl, c] = alb[c][sl].clamp(0, 1) * irr[c].clamp_min_(0)
            o += cnt
    return out
