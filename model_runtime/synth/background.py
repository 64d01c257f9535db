"""Backgrounds: procedural scenes (device tensors) and real image regions with no person.

Procedural: octave value noise between two colours, an optional floor below a horizon with a
perspective checkerboard, wall stripes, and up to three rectangles (furniture, doors, frames).
Real: regions of photos in ``<data>/realdata`` (COCO-format sets whose annotations box every
person: :data:`REAL_SETS`) chosen so that they do not overlap any annotated person box
(enlarged by 15 %); read at run time, never copied.  A sample whose 32 candidate regions all
touch a person falls back to procedural (``params["bg_real"]`` records what was used).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F

from .postfx import linear_to_srgb, opencv

#: (folder under realdata, COCO-format annotation file)
REAL_SETS: Final[tuple[tuple[str, str], ...]] = (
    ("mmpose/tests/data/coco", "test_coco_wholebody_one_image.json"),
    ("mmpose/tests/data/aic", "test_aic.json"),
    ("mmpose/tests/data/crowdpose", "test_crowdpose.json"),
    ("mmpose/tests/data/ochuman", "test_ochuman.json"),
    ("mmpose/tests/data/mhp", "test_mhp.json"),
    ("mmpose/tests/data/exlpose", "test_exlpose.json"),
)
BOX_MARGIN: Final[float] = 0.15
MIN_REGION_PX: Final[int] = 96


@dataclass(frozen=True)
class RealImage:
    path: str
    width: int
    height: int
    boxes: np.ndarray        # (B, 4) x0, y0, x1, y1 enlarged person boxes


@lru_cache(maxsize=4)
def real_images(realdata: str) -> tuple[RealImage, ...]:
    """The photos usable as backgrounds under ``realdata`` (sorted; empty when the folder is absent)."""
    root = Path(realdata)
    out = []
    for folder, ann in REAL_SETS:
        f = root / folder / ann
        if not f.is_file():
            continue
        data = json.loads(f.read_text())
        boxes: dict = {}
        for a in data.get("annotations", ()):
            x, y, w, h = (float(v) for v in a["bbox"])
            m = BOX_MARGIN
            boxes.setdefault(a["image_id"], []).append([x - m * w, y - m * h, x + (1 + m) * w, y + (1 + m) * h])
        for im in data.get("images", ()):
            p = root / folder / im["file_name"]
            if p.is_file():
                out.append(RealImage(str(p), int(im["width"]), int(im["height"]),
                                     np.asarray(boxes.get(im["id"], np.zeros((0, 4))), np.float64).reshape(-1, 4)))
    return tuple(sorted(out, key=lambda r: r.path))


@lru_cache(maxsize=32)
def _read_linear(path: str) -> np.ndarray:
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(img[..., ::-1])          # RGB uint8


def real_region(img: RealImage, cand: torch.Tensor, aspect: float) -> tuple[float, float, float, float, bool] | None:
    """First candidate region ``(x0, y0, w, h, flip)`` of ``img`` with the output ``aspect`` (w/h)
    that touches no person box; ``cand (32, 4)`` uniform numbers. None if all do."""
    c = cand.double().numpy()
    hmax = min(img.height, img.width / aspect)
    hmin = min(MIN_REGION_PX, hmax)
    h = hmin + c[:, 2] * (hmax - hmin)
    w = h * aspect
    x0 = c[:, 0] * (img.width - w)
    y0 = c[:, 1] * (img.height - h)
    b = img.boxes
    if len(b):
        overlap = ((x0[:, None] < b[None, :, 2]) & (x0[:, None] + w[:, None] > b[None, :, 0])
                   & (y0[:, None] < b[None, :, 3]) & (y0[:, None] + h[:, None] > b[None, :, 1])).any(1)
    else:
        overlap = np.zeros(len(c), bool)
    ok = np.nonzero(~overlap)[0]
    if not len(ok):
        return None
    i = ok[0]
    return float(x0[i]), float(y0[i]), float(w[i]), float(h[i]), bool(c[i, 3] < 0.5)


def real_background(img: RealImage, region, width: int, height: int, device) -> torch.Tensor:
    """The region resized to ``(height, width, 3)`` display RGB in [0, 1] on ``device`` (the
    decoded photo is cached: :func:`_read_linear`)."""
    import cv2

    x0, y0, w, h, flip = region
    src = _read_linear(img.path)
    xi0, yi0 = int(np.floor(x0)), int(np.floor(y0))
    xi1, yi1 = min(int(np.ceil(x0 + w)), src.shape[1]), min(int(np.ceil(y0 + h)), src.shape[0])
    crop = src[yi0:yi1, xi0:xi1]
    crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
    if flip:
        crop = crop[:, ::-1]
    return torch.as_tensor(np.ascontiguousarray(crop), device=device).float().div_(255)


def procedural(colours: torch.Tensor, noise: torch.Tensor, layout: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Procedural backgrounds ``(N, H, W, 3)`` display RGB in [0, 1] (channels last), drawn in
    linear RGB at half resolution, converted to display values and upsampled (a background is
    out of focus; 4x fewer operations).

    colours ``(N, 4, 3)`` linear; noise ``(N, 4, 24, 32)`` uniform grids (octave k uses the
    top-left ``3*2^k x 4*2^k``); layout ``(N, 16)`` uniform numbers (horizon, floor, stripes, rectangles).
    """
    full = (height, width)
    height, width = max(height // 2, 8), max(width // 2, 8)
    N, dev = colours.shape[0], colours.device
    low = (max(height // 4, 4), max(width // 4, 4))                 # octaves summed at 1/8 resolution
    v = torch.zeros(N, 1, *low, device=dev)
    for k in range(4):                                     # 4 octaves (not a pixel loop)
        g = noise[:, k:k + 1, : 3 * 2 ** k, : 4 * 2 ** k]
        v = v + 0.5 ** k * F.interpolate(g, size=low, mode="bilinear", align_corners=False)
    v = F.interpolate(v / 1.875, size=(height, width), mode="bilinear", align_corners=False)[:, 0, :, :, None]  # (N, H, W, 1)
    col = colours[:, :, None, None, :]                                                            # (N, 4, 1, 1, 3)
    img = col[:, 0] * (1 - v) + col[:, 1] * v                                                     # (N, H, W, 3)
    ys = (torch.arange(height, device=dev, dtype=torch.float32) + 0.5)[:, None] / height      # (H, 1)
    xs = (torch.arange(width, device=dev, dtype=torch.float32) + 0.5)[None, :] / width        # (1, W)
    for i, L in enumerate(layout.tolist()):               # per image: only the features it has
        im, vi = img[i], v[i]                                                                   # (H, W, 3), (H, W, 1)
        if L[3] < 0.35:                                   # wall stripes (vertical)
            im.mul_(torch.where(torch.sin(xs * (10 + 60 * L[2]) * np.pi) > 0, 0.8, 1.0)[..., None])
        if L[0] < 0.6:                                    # floor below a horizon, perspective checkerboard
            hy = 0.3 + 0.5 * L[1]
            below = torch.nonzero(ys[:, 0] > hy).flatten()               # rows whose centre is below hy
            if len(below):
                r0 = int(below[0])
                dy = (ys[r0:] - hy).clamp_min(1e-3)
                fcol = col[i, 2] * (0.7 + 0.3 * vi[r0:])
                if L[7] < 0.5:
                    u = (xs - 0.5) / dy * (1 + 3 * L[5])
                    w = 1.0 / dy * (0.5 + L[6])
                    check = (torch.floor(u) + torch.floor(w)) % 2 == 0
                    fcol = fcol * torch.where(check, 0.7, 1.0)[..., None]
                im[r0:] = fcol
        for r in range(3):                                # up to three rectangles
            if not L[4] > 0.3 * r:
                continue
            x0, y0 = L[8 + 2 * r] * 0.9, L[9 + 2 * r] * 0.8
            x1 = x0 + 0.1 + 0.3 * L[(10 + 2 * r) % 16]
            y1 = y0 + 0.15 + 0.4 * L[(11 + 2 * r) % 16]
            cols = torch.nonzero((xs[0] >= x0) & (xs[0] < x1)).flatten()
            rows = torch.nonzero((ys[:, 0] >= y0) & (ys[:, 0] < y1)).flatten()
            if len(cols) and len(rows):
                sl = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
                shade = 0.6 + 0.4 * L[(12 + r) % 16]
                im[sl] = col[i, 3] * shade * (0.85 + 0.15 * vi[sl])
    return upsample_nhwc(linear_to_srgb(img), *full)


def upsample_nhwc(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize (half-pixel centres) of channels-last ``img (N, h, w, C)`` to contiguous
    ``(N, height, width, C)``: OpenCV per image on the CPU (a tenth of torch's CPU cost), torch elsewhere
    (and where OpenCV is not installed)."""
    cv2 = opencv() if img.device.type == "cpu" else None
    if cv2 is None:                                                  # a GPU, or a machine without OpenCV
        x = F.interpolate(img.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
        return x.permute(0, 2, 3, 1).contiguous()

    src = img.contiguous().numpy()
    out = np.empty((len(src), height, width, src.shape[-1]), np.float32)
    for i in range(len(src)):                                        # per image: one OpenCV call
        cv2.resize(src[i], (width, height), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(out)


def plain(N: int, height: int, width: int, device) -> torch.Tensor:
    """Uniform grey ``(N, H, W, 3)`` display RGB (background switched off)."""
    return torch.full((N, height, width, 3), 0.5, device=device)
