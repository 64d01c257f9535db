"""Image degradations of the synthetic renders, batched on the device: motion blur, sensor
noise, JPEG compression (a torch re-implementation of baseline JPEG's lossy steps: YCbCr,
4:2:0 chroma, 8x8 DCT quantised with the standard tables scaled by quality), 8-bit output."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA = torch.tensor([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float32).reshape(8, 8)
_CHROMA = torch.tensor([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=torch.float32).reshape(8, 8)
BLUR_TAPS = 9


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def motion_blur(img: torch.Tensor, length_px: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Linear motion blur of ``img (N, C, H, W)``: the mean of :data:`BLUR_TAPS` copies shifted
    along ``angle (N,)`` rad over ``length_px (N,)`` px, centred (keypoints do not move)."""
    N, C, H, W = img.shape
    sel = torch.nonzero(length_px > 0.5).flatten()
    if not len(sel):
        return img
    x = img[sel]
    dev = img.device
    ys, xs = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float32), torch.arange(W, device=dev, dtype=torch.float32), indexing="ij")
    base = torch.stack([(xs + 0.5) / W * 2 - 1, (ys + 0.5) / H * 2 - 1], -1)[None]      # (1, H, W, 2)
    L, a = length_px[sel], angle[sel]
    d = torch.stack([torch.cos(a) * L / W * 2, torch.sin(a) * L / H * 2], -1)[:, None, None, :]   # (n,1,1,2)
    acc = torch.zeros_like(x)
    for k in range(BLUR_TAPS):                                           # taps, not pixels
        off = (k / (BLUR_TAPS - 1) - 0.5) * d
        acc = acc + F.grid_sample(x, base + off, mode="bilinear", padding_mode="border", align_corners=False)
    out = img.clone()
    out[sel] = acc / BLUR_TAPS
    return out


def add_noise(img: torch.Tensor, std: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """Gaussian sensor noise ``std (N,)`` per image, drawn on the image's device from a generator
    seeded per sample by ``seeds (N,)``."""
    out = img.clone()
    for i in torch.nonzero(std > 0).flatten().tolist():                  # per sample (seeded)
        g = torch.Generator(device=img.device).manual_seed(int(seeds[i]))
        out[i] = img[i] + float(std[i]) * torch.randn(img.shape[1:], generator=g, device=img.device)
    return out.clamp(0, 1)


def _dct_matrix(dev) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32, device=dev)
    D = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    D[0] /= math.sqrt(2)
    return D


def _quant_table(base: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    q = quality.float().clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    return torch.floor((base[None] * scale[:, None, None] + 50) / 100).clamp(1, 255)      # (N, 8, 8)


def _blocks_roundtrip(x: torch.Tensor, Q: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Quantise the 8x8 DCT of ``x (N, H, W)`` (H, W multiples of 8) with ``Q (N, 8, 8)``."""
    N, H, W = x.shape
    b = x.reshape(N, H // 8, 8, W // 8, 8).permute(0, 1, 3, 2, 4)              # (N, h, w, 8, 8)
    c = D @ b @ D.T
    q = Q[:, None, None]
    c = torch.round(c / q) * q
    b = D.T @ c @ D
    return b.permute(0, 1, 3, 2, 4).reshape(N, H, W)


def jpeg(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip of sRGB ``img (N, 3, H, W)`` in [0, 1] at ``quality (N,)`` (0 = untouched)."""
    sel = torch.nonzero(quality > 0).flatten()
    if not len(sel):
        return img
    x = img[sel] * 255
    n, _, H, W = x.shape
    ph, pw = (-H) % 16, (-W) % 16
    x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    R, G, B = x[:, 0], x[:, 1], x[:, 2]
    Y = 0.299 * R + 0.587 * G + 0.114 * B - 128
    Cb = -0.168736 * R - 0.331264 * G + 0.5 * B
    Cr = 0.5 * R - 0.418688 * G - 0.081312 * B
    D = _dct_matrix(img.device)
    q = quality[sel]
    Y = _blocks_roundtrip(Y, _quant_table(_LUMA.to(img.device), q), D)
    Qc = _quant_table(_CHROMA.to(img.device), q)
    C = F.avg_pool2d(torch.stack([Cb, Cr], 1), 2)                                    # 4:2:0
    C = torch.stack([_blocks_roundtrip(C[:, i], Qc, D) for i in range(2)], 1)
    C = F.interpolate(C, scale_factor=2, mode="bilinear", align_corners=False)
    Cb, Cr = C[:, 0], C[:, 1]
    Y = Y + 128
    out = torch.stack([Y + 1.402 * Cr, Y - 0.344136 * Cb - 0.714136 * Cr, Y + 1.772 * Cb], 1) / 255
    res = img.clone()
    res[sel] = out[:, :, :H, :W].clamp(0, 1)
    return res


def quantise8(img: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit steps (what a shard stores), still float in [0, 1]."""
    return torch.round(img.clamp(0, 1) * 255) / 255
