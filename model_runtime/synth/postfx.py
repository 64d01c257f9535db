"""Image degradations of the synthetic renders: motion blur, sensor noise, JPEG compression,
8-bit output.

Two paths with the same steps: :func:`finish_cpu` (OpenCV/libjpeg on channels-last uint8
buffers, one image at a time: the CPU path, which also returns the JPEG streams so that shards
store them instead of re-encoding) and the batched torch functions :func:`motion_blur`,
:func:`add_noise`, :func:`jpeg_torch` (a torch re-implementation of baseline JPEG's lossy
steps: YCbCr, 4:2:0 chroma, 8x8 DCT quantised with the standard tables scaled by quality) and
:func:`quantise8` for other devices (no image leaves the GPU)."""
from __future__ import annotations

import functools
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


GAMMA = 2.2


@functools.cache
def opencv():
    """OpenCV when it is installed (the CPU path: libjpeg, fast resizes), else None.  A bare GPU machine
    has torch alone; every step then runs as torch operations (:func:`jpeg_torch`, ``F.interpolate``).
    Probed once per process (a failed import searches the path again on every call)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear RGB -> display values in [0, 1] with gamma 2.2 (as :func:`model_runtime.face.render.linear_to_bgr8`;
    one power per value, the piecewise sRGB curve costs three times as much)."""
    return x.clamp(0, 1).pow(1 / GAMMA)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`linear_to_srgb`."""
    return x.clamp(0, 1).pow(GAMMA)


def blur_offsets(length_px: float, angle: float) -> tuple[list[int], list[int]]:
    """Whole-pixel offsets ``(dx, dy)`` of the :data:`BLUR_TAPS` copies of a linear motion blur of
    ``length_px`` along ``angle`` rad, centred on 0."""
    t = torch.linspace(-0.5, 0.5, BLUR_TAPS)
    return (torch.round(t * length_px * math.cos(angle)).long().tolist(),
            torch.round(t * length_px * math.sin(angle)).long().tolist())


def finish_cpu(img: torch.Tensor, blur_px: torch.Tensor, blur_angle: torch.Tensor, noise_std: torch.Tensor,
               seeds: torch.Tensor, quality: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Blur, noise, 8 bit and JPEG of CPU images ``img (N, H, W, 3)`` float32 display RGB in [0, 1].

    blur_px / blur_angle ``(N,)`` (see :func:`motion_blur`), noise_std ``(N,)`` (Gaussian, drawn
    from a generator seeded by ``seeds (N,)``), quality ``(N,)`` (0: no JPEG).  Returns the
    8-bit images ``(N, H, W, 3)`` uint8 (the decoded JPEG where quality > 0) and, per image, the
    JPEG stream whose decoding they are (``bytes``) or ``None``.
    A loop over images: every step is one OpenCV/torch call on a whole image.
    """
    import cv2

    N, H, W, _ = img.shape
    out = torch.empty((N, H, W, 3), dtype=torch.uint8)
    blobs: list = []
    for i in range(N):
        x = img[i]
        L = float(blur_px[i])
        if L > 0.5:                                                   # mean of shifted copies, edges repeated
            ox, oy = blur_offsets(L, float(blur_angle[i]))
            pad = max(max(abs(v) for v in ox), max(abs(v) for v in oy))
            xp = torch.from_numpy(cv2.copyMakeBorder(x.numpy(), pad, pad, pad, pad, cv2.BORDER_REPLICATE))
            acc = torch.zeros_like(x)
            for dx, dy in zip(ox, oy):
                acc += xp[pad + dy: pad + dy + H, pad + dx: pad + dx + W]
            x = acc.mul_(1.0 / BLUR_TAPS)
        std = float(noise_std[i])
        if std > 0:
            g = torch.Generator().manual_seed(int(seeds[i]))
            y = torch.randn((H, W, 3), generator=g).mul_(255 * std).add_(x, alpha=255)
        else:
            y = x * 255
        out[i].copy_(y.clamp_(0, 255).add_(0.5))                      # float -> uint8 truncates: rounding
        q = int(quality[i])
        if q <= 0:
            blobs.append(None)
            continue
        u8 = out[i].numpy()
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB, dst=u8)
        blobs.append(buf.tobytes())
    return out, blobs


def motion_blur(img: torch.Tensor, length_px: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Linear motion blur of ``img (N, C, H, W)``: the mean of :data:`BLUR_TAPS` copies shifted
    along ``angle (N,)`` rad over ``length_px (N,)`` px (offsets rounded to whole pixels, edges
    repeated), centred so keypoints do not move.  Loops over blurred samples and taps only."""
    N, C, H, W = img.shape
    sel = torch.nonzero(length_px > 0.5).flatten().tolist()
    if not sel:
        return img
    out = img.clone()
    for i in sel:
        ox, oy = blur_offsets(float(length_px[i]), float(angle[i]))
        pad = int(max(max(abs(v) for v in ox), max(abs(v) for v in oy)))
        xp = F.pad(img[i:i + 1], (pad, pad, pad, pad), mode="replicate")[0]
        acc = torch.zeros_like(img[i])
        for dx, dy in zip(ox, oy):
            acc += xp[:, pad + dy: pad + dy + H, pad + dx: pad + dx + W]
        out[i] = acc / BLUR_TAPS
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
    """JPEG round trip of sRGB ``img (N, 3, H, W)`` in [0, 1] at ``quality (N,)`` (0 = untouched).

    On the CPU: OpenCV's libjpeg encoder and decoder (:func:`jpeg_cv2`); on other devices the
    torch re-implementation (:func:`jpeg_torch`), so no image leaves the GPU."""
    if img.device.type == "cpu" and opencv() is not None:
        return jpeg_cv2(img, quality)
    return jpeg_torch(img, quality)


def jpeg_cv2(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """:func:`jpeg` with OpenCV (CPU tensors); images with quality 0 are only rounded to 8 bit."""
    import cv2
    import numpy as np

    u8 = torch.round(img.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.empty_like(u8)
    for i in range(len(u8)):                                  # an encoder call per image
        q = int(quality[i])
        if q <= 0:
            out[i] = u8[i]
            continue
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8[i][..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q])
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255


def jpeg_torch(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """:func:`jpeg` as batched torch operations (any device)."""
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
