"""Face-model rendering: pinhole projection, a vectorised z-buffer rasteriser, shaded renders.

Used where the face fitting needs *pixels* rather than vertices: rendering a 3DMM
with known parameters (synthetic tests, the correspondence builder that runs
MediaPipe on renders of a face model) and looking up which surface point lies
under a pixel.  It is not differentiable and not meant for the per-frame fitting
loop (that one samples the image at projected vertices, as MoFA does).

Conventions: pixel coordinates are continuous with ``(0, 0)`` at the top-left
corner of the top-left pixel (COCO), so pixel ``(row i, col j)`` has its centre at
``(x, y) = (j + 0.5, i + 0.5)``.  Depth ``z`` grows away from the camera; the
nearest triangle wins.  No Python loop over triangles or pixels: every triangle's
bounding box is expanded into candidate pixels at once, and the z-test is a
``scatter_reduce``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import torch

from ..geometry import camera
from ..models.face_model import FaceModel, face_albedo, face_geometry, sh_shading, vertex_normals


def outward_sign(model: FaceModel) -> float:
    """+1 if the model's triangle winding gives outward :func:`vertex_normals`, else -1.

    Decided once from the mean shape: outward normals point away from the centroid
    on average.  Multiply :func:`vertex_normals` by it.
    """
    v = np.asarray(model.mean_shape, np.float64)[None]
    n = vertex_normals(v, model.faces)[0]
    return 1.0 if float(((v[0] - v[0].mean(0)) * n).sum()) >= 0 else -1.0


#: field of view (degrees across the longer image side) assumed for a face image whose camera is
#: unknown: a face *crop* (a tight box around one face, as in the synthetic tests, a photo
#: dataset or a cut-out of a frame) spans a narrow angle, ~30 degrees, like a 65 mm lens on full
#: frame.  Not the camera default of captures (:data:`model_runtime.core.options.DEFAULT_FOV_DEG`,
#: the whole frame): the capture pipeline always passes its camera's focal length (``focal_px``),
#: so this default never applies to captures.
FACE_CROP_FOV_DEG: Final[float] = 30.0


def intrinsics(width: int, height: int, focal_px: float | None = None,
               fov_deg: float = FACE_CROP_FOV_DEG) -> np.ndarray:
    """Pinhole ``K`` ``(3, 3)`` of a face image: :func:`model_runtime.geometry.camera.intrinsics_from_fov`
    with the face-crop default :data:`FACE_CROP_FOV_DEG`; ``focal_px`` wins when given."""
    return camera.intrinsics_from_fov((width, height), fov_deg, focal_px)


def project(points_cam, K):
    """Perspective projection: camera-space ``(..., 3)`` (x right, y down, z forward) -> px ``(..., 2)``.

    ``K`` ``(3, 3)`` (numpy or torch, same backend as the points).
    """
    z = points_cam[..., 2:3]
    if isinstance(z, torch.Tensor):
        z = z.clamp_min(1e-6)
    else:
        z = np.maximum(z, 1e-6)
    return points_cam[..., :2] / z * K[[0, 1], [0, 1]] + K[:2, 2]


def render_face(model: FaceModel, identity, expression, albedo, sh, rotation, translation, K,
                width: int, height: int, background=(0.5, 0.5, 0.5)):
    """Render a 3DMM instance (Eq. 3-5) into an sRGB image.

    identity ``(Ki,)``, expression ``(Ke,)``, albedo ``(Ka,)``, sh ``(27,)``; rotation
    ``(3, 3)`` and translation ``(3,)`` map face-model space to camera space
    (``x_cam = R @ x_model + t``); ``K`` ``(3, 3)``.  SH lighting is expressed in camera
    axes (the light stays put when the head turns).  Shading is linear RGB (albedo x SH
    irradiance) converted to sRGB with gamma 2.2.  ``background`` is linear RGB.

    Returns ``(image_bgr (H, W, 3) uint8, raster)`` where ``raster`` (:class:`Raster`)
    tells which triangle and barycentric point lies under every pixel.
    """
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    verts = face_geometry(t(model.mean_shape), t(model.id_basis), t(model.exp_basis),
                          t(identity)[None], t(expression)[None])          # (1, N, 3)
    refl = face_albedo(t(model.mean_albedo), t(model.albedo_basis), t(albedo)[None])
    R = t(rotation)
    cam = verts[0] @ R.T + t(translation)                                  # (N, 3)
    normals = outward_sign(model) * vertex_normals(verts, model.faces)[0] @ R.T   # camera axes
    colour = sh_shading(refl, normals[None], t(sh)[None])[0]
    linear, raster = render_mesh(cam, model.faces, colour, t(K), width, height, background)
    return linear_to_bgr8(linear), raster


def render_mesh(verts_cam: torch.Tensor, faces, vertex_colour: torch.Tensor, K: torch.Tensor,
                width: int, height: int, background=(0.5, 0.5, 0.5)):
    """Rasterise a mesh with per-vertex linear colours.

    verts_cam ``(N, 3)`` camera space, faces ``(F, 3)``, vertex_colour ``(N, C)``, K ``(3, 3)``
    (torch, same dtype) -> ``(image (H, W, C) linear, raster)``; background ``(C,)`` where no
    triangle covers a pixel.
    """
    px = project(verts_cam, K)
    raster = rasterize(torch.cat([px, verts_cam[:, 2:3]], -1), faces, height, width)
    img = raster.interpolate(vertex_colour, torch.as_tensor(np.asarray(faces), dtype=torch.long))
    bg = torch.as_tensor(np.asarray(background), dtype=img.dtype)
    return torch.where(raster.mask[..., None], img, bg), raster


def linear_to_bgr8(linear: torch.Tensor) -> np.ndarray:
    """Linear RGB ``(H, W, 3)`` -> sRGB-ish (gamma 2.2) BGR uint8 ``(H, W, 3)``."""
    srgb = linear.clamp(0, 1) ** (1 / 2.2)
    return np.ascontiguousarray((srgb.numpy()[..., ::-1] * 255.0 + 0.5).astype(np.uint8))


@dataclass(frozen=True)
class Raster:
    """Result of :func:`rasterize` for an ``H x W`` image.

    face_id ``(H, W)`` long, ``-1`` where no triangle covers the pixel centre;
    bary ``(H, W, 3)`` barycentric weights of the pixel centre in that triangle
    (zero on background); depth ``(H, W)`` interpolated ``z`` (``inf`` on background).
    """

    face_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """``(H, W)`` bool: pixel covered by the mesh."""
        return self.face_id >= 0

    def interpolate(self, vertex_values: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Per-vertex values ``(N, C)`` -> per-pixel ``(H, W, C)`` (zero on background)."""
        fid = self.face_id.clamp_min(0)
        tri = faces[fid]                                   # (H, W, 3)
        vals = vertex_values[tri]                          # (H, W, 3, C)
        out = (self.bary[..., None] * vals).sum(-2)
        return out * self.mask[..., None].to(out.dtype)


def rasterize(verts_px: torch.Tensor, faces: torch.Tensor | np.ndarray, height: int, width: int,
              max_candidates: int = 40_000_000) -> Raster:
    """Z-buffer rasterisation of one mesh.

    verts_px ``(N, 3)``: x, y in pixels (see module conventions), z depth (> 0 in
    front of the camera; vertices with z <= 0 are culled with their triangles).
    faces ``(F, 3)`` vertex indices.  Both windings are drawn (no backface culling).
    ``max_candidates`` bounds memory: a mesh whose triangle bounding boxes cover
    more pixels than that raises :class:`ValueError` instead of exhausting RAM.
    """
    dev = verts_px.device
    v = verts_px.detach().to(torch.float64)
    f = torch.as_tensor(np.asarray(faces), dtype=torch.long, device=dev)
    tri = v[f]                                              # (F, 3, 3)
    valid = (tri[..., 2] > 1e-9).all(-1)
    x0 = torch.floor(tri[..., 0].amin(-1) - 0.5).clamp(0, width - 1)
    x1 = torch.ceil(tri[..., 0].amax(-1) - 0.5).clamp(0, width - 1)
    y0 = torch.floor(tri[..., 1].amin(-1) - 0.5).clamp(0, height - 1)
    y1 = torch.ceil(tri[..., 1].amax(-1) - 0.5).clamp(0, height - 1)
    on_screen = valid & (tri[..., 0].amax(-1) >= 0) & (tri[..., 0].amin(-1) <= width) \
        & (tri[..., 1].amax(-1) >= 0) & (tri[..., 1].amin(-1) <= height)
    bw = (x1 - x0 + 1).long() * on_screen
    bh = (y1 - y0 + 1).long() * on_screen
    counts = bw * bh                                         # (F,)
    total = int(counts.sum())
    face_id = torch.full((height, width), -1, dtype=torch.long, device=dev)
    bary_img = torch.zeros(height, width, 3, dtype=verts_px.dtype, device=dev)
    depth = torch.full((height, width), float("inf"), dtype=verts_px.dtype, device=dev)
    if total == 0:
        return Raster(face_id, bary_img, depth)
    if total > max_candidates:
        raise ValueError(f"rasterize: {total} candidate pixels exceed max_candidates={max_candidates}")

    # expand each triangle's bounding box into candidate pixels
    fidx = torch.repeat_interleave(torch.arange(f.shape[0], device=dev), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=dev) - start[fidx]
    px = x0[fidx].long() + local % bw[fidx]
    py = y0[fidx].long() + torch.div(local, bw[fidx], rounding_mode="floor")
    cx, cy = px.to(torch.float64) + 0.5, py.to(torch.float64) + 0.5

    a, b, c = tri[fidx, 0], tri[fidx, 1], tri[fidx, 2]     # (M, 3) each
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = den.abs() > 1e-12
    den = torch.where(ok, den, torch.ones_like(den))
    w0 = ((b[:, 1] - c[:, 1]) * (cx - c[:, 0]) + (c[:, 0] - b[:, 0]) * (cy - c[:, 1])) / den
    w1 = ((c[:, 1] - a[:, 1]) * (cx - c[:, 0]) + (a[:, 0] - c[:, 0]) * (cy - c[:, 1])) / den
    w2 = 1.0 - w0 - w1
    eps = -1e-9
    inside = ok & (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    fidx, px, py = fidx[inside], px[inside], py[inside]
    bary = torch.stack([w0[inside], w1[inside], w2[inside]], -1)
    z = (bary * torch.stack([a[inside, 2], b[inside, 2], c[inside, 2]], -1)).sum(-1)

    # z-test: nearest depth per pixel, then the lowest triangle id among exact ties
    pix = py * width + px
    zbuf = torch.full((height * width,), float("inf"), dtype=torch.float64, device=dev)
    zbuf = zbuf.scatter_reduce(0, pix, z, reduce="amin")
    win = z <= zbuf[pix]
    big = torch.iinfo(torch.long).max
    best = torch.full((height * width,), big, dtype=torch.long, device=dev)
    best = best.scatter_reduce(0, pix[win], fidx[win], reduce="amin")
    keep = win & (fidx == best[pix])
    pix_k = pix[keep]
    face_id.view(-1)[pix_k] = fidx[keep]
    bary_img.view(-1, 3)[pix_k] = bary[keep].to(verts_px.dtype)
    depth.view(-1)[pix_k] = z[keep].to(verts_px.dtype)
    return Raster(face_id, bary_img, depth)
