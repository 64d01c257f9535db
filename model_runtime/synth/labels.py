"""Labels of the synthetic images: projection, depth-tested visibility, crop boxes and their
intrinsics, hard-case tags.  Pure functions on batched torch tensors."""
from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F

from ..core.skeleton import BODY_KEYPOINT_NAMES
from .raster import BatchRaster, rasterize_batch

#: a hand is "small" below this height (px) of its 21 keypoints' box (issue 12: hand height < 40 px)
SMALL_HAND_PX: Final[float] = 40.0
LIMB_KEYPOINTS: Final[tuple[str, ...]] = ("left_elbow", "right_elbow", "left_wrist", "right_wrist",
                                          "left_knee", "right_knee", "left_ankle", "right_ankle")
_LIMB_IDX = [BODY_KEYPOINT_NAMES.index(n) for n in LIMB_KEYPOINTS]


def raster(verts_px: torch.Tensor, faces: torch.Tensor, height: int, width: int, cull: int = 0) -> BatchRaster:
    """:func:`rasterize_batch` (x, y px, z depth; ``cull``: the back-face sign, 0 = none)."""
    return rasterize_batch(verts_px, faces, height, width, cull=cull)


def project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-space ``(N, P, 3)`` -> px ``(N, P, 2)`` with ``K (N, 3, 3)`` (z clamped at 1e-6)."""
    z = points[..., 2:3].clamp_min(1e-6)
    return points[..., :2] / z * K[:, None, [0, 1], [0, 1]] + K[:, None, :2, 2]


def in_frame(xy: torch.Tensor, z: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``(N, P)`` bool: in front of the camera and inside ``[0, W) x [0, H)``."""
    return (z > 1e-3) & (xy[..., 0] >= 0) & (xy[..., 0] < width) & (xy[..., 1] >= 0) & (xy[..., 1] < height)


def visibility(xy: torch.Tensor, pts: torch.Tensor, depth: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Depth-tested visibility ``(N, P)`` bool of points ``pts (N, P, 3)`` projected at ``xy (N, P, 2)``.

    A point is visible when it is in frame and the z-buffer ``depth (N, H, W)`` at its pixel is
    no nearer than ``z - radius`` (``radius (P,)`` m: the depth of the body's own surface over
    the point, so a joint inside a limb is visible when that limb's surface is what the pixel
    shows, and hidden behind another limb or an occluder)."""
    N, H, W = depth.shape
    inside = in_frame(xy, pts[..., 2], W, H)
    col = xy[..., 0].floor().long().clamp(0, W - 1)
    row = xy[..., 1].floor().long().clamp(0, H - 1)
    d = depth.reshape(N, -1).gather(1, row * W + col)
    return inside & (d >= pts[..., 2] - radius)


def hidden_by_other(xy: torch.Tensor, vis: torch.Tensor, face_id: torch.Tensor, tri_owner: torch.Tensor,
                    owner: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` bool: points in frame, not visible, and what the pixel shows is not their own part.

    xy ``(N, P, 2)`` px; vis ``(N, P)`` from :func:`visibility` (so a hidden point has a nearer
    surface at its pixel); face_id ``(N, H, W)`` the z-buffer's triangles (-1 background; ids past
    ``len(tri_owner)`` are occluders, owned by nobody); tri_owner ``(F,)`` long the part each
    person triangle belongs to (-1 none); owner ``(P,)`` long the part of each point.  A hand
    point hidden by its own fingers is not hidden by another part; one behind the other hand,
    the body or an occluder is."""
    N, H, W = face_id.shape
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
    col = xy[..., 0].floor().long().clamp(0, W - 1)
    row = xy[..., 1].floor().long().clamp(0, H - 1)
    f = face_id.reshape(N, -1).gather(1, row * W + col)
    person = (f >= 0) & (f < tri_owner.shape[0])
    shown = torch.where(person, tri_owner[f.clamp(0, tri_owner.shape[0] - 1)], torch.full_like(f, -1))
    return inside & ~vis & (shown != owner)


def square_box(xy: torch.Tensor, enlarge: float, min_side: float) -> torch.Tensor:
    """Square boxes ``(N, 4)`` x0, y0, x1, y1 around points ``(N, P, 2)``: centred on their box,
    side ``max(enlarge * longer side, min_side)``."""
    lo, hi = xy.amin(1), xy.amax(1)
    c = 0.5 * (lo + hi)
    side = ((hi - lo).amax(-1) * enlarge).clamp_min(min_side)
    return torch.cat([c - side[:, None] / 2, c + side[:, None] / 2], -1)


def crop_intrinsics(K: torch.Tensor, box: torch.Tensor, size: int) -> torch.Tensor:
    """Intrinsics ``(N, 3, 3)`` of a ``size x size`` crop of box ``(N, 4)`` of an image with ``K``:
    crop px = (image px - box[:2]) * size / box side."""
    s = size / (box[:, 2] - box[:, 0])
    Kc = K.clone()
    Kc[:, 0, 0], Kc[:, 1, 1] = K[:, 0, 0] * s, K[:, 1, 1] * s
    Kc[:, 0, 2], Kc[:, 1, 2] = (K[:, 0, 2] - box[:, 0]) * s, (K[:, 1, 2] - box[:, 1]) * s
    return Kc


def crop_image(img: torch.Tensor, box: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear crops ``(N, C, size, size)`` of ``img (N, C, H, W)`` inside ``box (N, 4)`` px
    (border pixels repeat outside the image)."""
    N, C, H, W = img.shape
    t = (torch.arange(size, device=img.device, dtype=torch.float32) + 0.5) / size          # (size,)
    xs = box[:, 0:1] + t[None] * (box[:, 2:3] - box[:, 0:1])                                # (N, size)
    ys = box[:, 1:2] + t[None] * (box[:, 3:4] - box[:, 1:2])
    gx = (xs / W * 2 - 1)[:, None, :].expand(N, size, size)
    gy = (ys / H * 2 - 1)[:, :, None].expand(N, size, size)
    return F.grid_sample(img, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=False)


#: a hand is "occluded" when at least this many of its 21 keypoints are in frame and hidden by
#: something other than its own fingers (another body part, the other hand, an occluder)
HAND_OCCLUDED_POINTS: Final[int] = 11


def hard_case_tags(body_2d, hand_2d, hand_hidden, mask, p: dict, width: int, height: int) -> dict[str, torch.Tensor]:
    """Hard-case tags ``(N,)`` bool.

    hand_small: a hand with at least 11 of 21 keypoints in frame whose keypoint box's longer
    side is under :data:`SMALL_HAND_PX`; limbs_out_of_frame: an elbow, wrist, knee or ankle is outside the image;
    hand_occluded: a hand with at least :data:`HAND_OCCLUDED_POINTS` (of 21) keypoints in frame
    and hidden by another part or an occluder (``hand_hidden (N, 2, 21)`` from
    :func:`hidden_by_other`; its own fingers do not count); truncated: any body keypoint outside
    the image or the mask touches the border; occluded: an occluder was placed; blurred: motion
    blur over 4 px.
    """
    inside_b = (body_2d[..., 0] >= 0) & (body_2d[..., 0] < width) & (body_2d[..., 1] >= 0) & (body_2d[..., 1] < height)
    inside_h = (hand_2d[..., 0] >= 0) & (hand_2d[..., 0] < width) & (hand_2d[..., 1] >= 0) & (hand_2d[..., 1] < height)
    hand_in = inside_h.sum(-1) >= 11                                                       # (N, 2)
    hand_h = (hand_2d.amax(-2) - hand_2d.amin(-2)).amax(-1)                             # longer box side
    border = mask[:, 0].any(-1) | mask[:, -1].any(-1) | mask[:, :, 0].any(-1) | mask[:, :, -1].any(-1)
    return {
        "hand_small": (hand_in & (hand_h < SMALL_HAND_PX)).any(-1),
        "limbs_out_of_frame": (~inside_b[:, _LIMB_IDX]).any(-1),
        "hand_occluded": ((hand_hidden & inside_h).sum(-1) >= HAND_OCCLUDED_POINTS).any(-1),
        "truncated": (~inside_b).any(-1) | border,
        "occluded": p["occ_active"].any(-1),
        "blurred": p["blur_px"] > 4.0,
    }
