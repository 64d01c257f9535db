"""Per-sample random parameters of a synthetic image (all variety, seeded).

Each sample ``i`` of a run with seed ``s`` draws from its own generator seeded by
:func:`sample_seed` ``(s, i)``: a sample is the same whatever the batch size, the ``count`` or the
device (these small draws are on the CPU; only per-pixel noise is drawn on the device).
The ranges below are the variety table of ``docs/synthetic.md``.
"""
from __future__ import annotations

import math
from typing import Final

import numpy as np
import torch

from .config import SynthConfig

FOV_DEG: Final = (40.0, 75.0)            # horizontal field of view
TILT_DEG: Final = (-20.0, 30.0)          # camera pitch (positive: looking down on the person)
ROLL_DEG: Final = (-12.0, 12.0)
HEIGHT_FRAC: Final = {"normal": (0.4, 0.9), "far": (0.06, 0.3), "close": (0.8, 1.8)}   # person height / image height
BETA_STD: Final = 1.0
BETA_EXTREME: Final = (2.0, 3.0)         # |beta_0|, |beta_1| of the "ends of the shape space" draws
P_BETA_EXTREME: Final = 0.25
ALPHA: Final = (0.85, 1.12)              # overall scale
IDENTITY_STD: Final = 0.8
P_EXPRESSION_UNIT: Final = 0.15          # each ARKit unit active with this probability
ALBEDO_DETAIL_STD: Final = 0.7
HAIR_LEVEL_M: Final = (-0.05, 0.07)      # hairline height above the ears (lower = more hair)
P_BALD: Final = 0.1
LIGHT_INTENSITY: Final = (0.5, 1.6)
AMBIENT: Final = (0.25, 0.8)
OCCLUDER_DEPTH_FRAC: Final = (0.35, 0.85)
OCCLUDER_SIZE_M: Final = (0.08, 0.45)
BLUR_PX: Final = (1.0, 14.0)
NOISE_STD: Final = (0.0, 0.035)
JPEG_QUALITY: Final = (25, 95)

#: skin tones, sRGB 0-255, light to dark (interpolated)
SKIN_TONES_SRGB: Final = np.array([[246, 222, 206], [234, 196, 170], [214, 170, 136], [190, 140, 104],
                                   [160, 110, 76], [120, 80, 55], [88, 58, 40], [60, 40, 30]], np.float64)
HAIR_SRGB: Final = np.array([[20, 16, 14], [45, 30, 22], [85, 55, 35], [150, 110, 65], [200, 170, 110],
                             [130, 60, 30], [160, 160, 160], [235, 235, 230]], np.float64)
#: garment slots (see :mod:`model_runtime.synth.shading`)
SLOTS: Final = ("top", "bottom", "shoes", "hair", "occluder0", "occluder1")
PATTERNS: Final = ("solid", "stripes", "checks", "dots", "noise")
NUM_OCCLUDERS: Final = 2


def sample_seed(seed: int, index: int) -> int:
    """64-bit seed of sample ``index`` of a run with ``seed`` (SeedSequence mixing)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed}, {index}")
    words = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(index)]).generate_state(2, np.uint32)
    return (int(words[0]) | (int(words[1]) << 32)) & ((1 << 63) - 1)


def srgb_to_linear(c):
    """Display values -> linear (gamma 2.2, the inverse of :func:`model_runtime.synth.postfx.linear_to_srgb`)."""
    return np.power(np.clip(c, 0, 1), 2.2)


def _u(gen, lo, hi, *shape):
    return lo + (hi - lo) * torch.rand(*(shape or (1,)), generator=gen)


def _hsv_colour(gen, sat=(0.0, 0.9), val=(0.05, 0.95)) -> torch.Tensor:
    """A random linear-RGB colour from HSV."""
    h, s, v = float(_u(gen, 0, 1)), float(_u(gen, *sat)), float(_u(gen, *val))
    k = (torch.tensor([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return torch.as_tensor(srgb_to_linear(rgb.numpy()), dtype=torch.float32)


def draw(cfg: SynthConfig, gen: torch.Generator, num_poses: int, num_identity: int, num_expression: int,
         num_albedo: int, builtin_expressions: bool, num_real_bg: int) -> dict[str, torch.Tensor]:
    """The random parameters of one sample (tensors without batch axis).

    ``num_poses``: size of the pose bank (0: random poses); sizes of the face model's bases;
    ``num_real_bg``: real background images available (0: procedural only).
    """
    p: dict[str, torch.Tensor] = {}
    # ---------------- shape
    betas = torch.zeros(16)
    if cfg.shape:
        betas = BETA_STD * torch.randn(16, generator=gen)
        if float(_u(gen, 0, 1)) < P_BETA_EXTREME:
            sign = torch.where(torch.rand(2, generator=gen) < 0.5, -1.0, 1.0)
            betas[:2] = sign * _u(gen, *BETA_EXTREME, 2)
    p["betas"] = betas
    p["alpha"] = _u(gen, *ALPHA)[0] if cfg.shape else torch.tensor(1.0)
    p["identity"] = IDENTITY_STD * torch.randn(num_identity, generator=gen) if cfg.shape else torch.zeros(num_identity)
    # ---------------- pose
    p["pose_index"] = torch.randint(max(num_poses, 1), (1,), generator=gen)[0] if num_poses else torch.tensor(-1)
    p["yaw"] = _u(gen, -math.pi, math.pi)[0] if cfg.camera else torch.tensor(0.0)
    p["random_pose_seed"] = torch.randint(0, 2 ** 62, (1,), generator=gen)[0]
    p["hand_seed"] = torch.randint(0, 2 ** 62, (1,), generator=gen)[0]
    # ---------------- face
    expr = torch.zeros(num_expression)
    if cfg.expression:
        if builtin_expressions:
            on = torch.rand(num_expression, generator=gen) < P_EXPRESSION_UNIT
            expr = on * torch.rand(num_expression, generator=gen) * _u(gen, 0.3, 1.0)
        else:
            expr = 0.7 * torch.randn(num_expression, generator=gen)
    p["expression"] = expr
    # ---------------- skin, hair
    tone = _u(gen, 0, 1)[0] if cfg.skin else torch.tensor(-1.0)
    p["skin_tone"] = tone
    alb = ALBEDO_DETAIL_STD * torch.randn(num_albedo, generator=gen) if cfg.skin else torch.zeros(num_albedo)
    alb[:3] = 0.0
    p["albedo"] = alb
    bald = (not cfg.hair) or float(_u(gen, 0, 1)) < P_BALD
    p["hair_level"] = torch.tensor(10.0) if bald else _u(gen, *HAIR_LEVEL_M)[0]
    # ---------------- clothing: top 0 none / 1 sleeveless / 2 short / 3 long; bottom 0 shorts / 1 long; shoes
    if cfg.clothing:
        top = torch.multinomial(torch.tensor([0.08, 0.15, 0.4, 0.37]), 1, generator=gen)[0]
        bottom = torch.multinomial(torch.tensor([0.3, 0.7]), 1, generator=gen)[0]
        shoes = (torch.rand(1, generator=gen) < 0.85)[0].long()
    else:
        top, bottom, shoes = torch.tensor(-1), torch.tensor(-1), torch.tensor(0)
    p["top"], p["bottom"], p["shoes"] = top, bottom, shoes
    S = len(SLOTS)
    col_a, col_b = torch.zeros(S, 3), torch.zeros(S, 3)
    for s in range(S):
        col_a[s], col_b[s] = _hsv_colour(gen), _hsv_colour(gen)
    hair_rgb = HAIR_SRGB[int(torch.randint(len(HAIR_SRGB), (1,), generator=gen))] / 255
    col_a[SLOTS.index("hair")] = torch.as_tensor(srgb_to_linear(hair_rgb), dtype=torch.float32)
    col_b[SLOTS.index("hair")] = col_a[SLOTS.index("hair")] * 0.6
    p["slot_colour_a"], p["slot_colour_b"] = col_a, col_b
    pat = torch.randint(len(PATTERNS), (S,), generator=gen)
    pat[SLOTS.index("hair")] = PATTERNS.index("stripes")
    if not cfg.clothing:
        pat[:] = 0
    p["slot_pattern"] = pat
    p["slot_freq"] = _u(gen, 4.0, 40.0, S)
    p["slot_angle"] = _u(gen, 0.0, math.pi, S)
    p["slot_freq"][SLOTS.index("hair")] = 150.0
    # ---------------- background
    real = cfg.real_background and num_real_bg > 0 and float(_u(gen, 0, 1)) < cfg.p_real_background
    p["bg_real"] = torch.tensor(bool(real))
    p["bg_image"] = torch.randint(max(num_real_bg, 1), (1,), generator=gen)[0]
    p["bg_crop"] = torch.rand(32, 4, generator=gen)            # candidate crops (x, y, size, flip)
    p["bg_colours"] = torch.stack([_hsv_colour(gen, (0, 0.6), (0.05, 0.9)) for _ in range(4)])
    p["bg_noise"] = torch.rand(4, 24, 32, generator=gen)      # octave grids (upsampled per octave)
    p["bg_layout"] = torch.rand(16, generator=gen)            # horizon, stripes, rectangles
    # ---------------- lighting (camera space; y down)
    sh = torch.zeros(3, 9)
    if cfg.lighting:
        amb = _u(gen, *AMBIENT)[0] * (1 + 0.25 * torch.randn(3, generator=gen)).clamp(0.5, 1.5)
        sh[:, 0] = amb / math.pi
        sh[:, 1:4] = 0.25 * torch.randn(3, 3, generator=gen) * amb[:, None] / math.pi
        d = torch.randn(3, generator=gen)
        d[2] = abs(float(d[2])) + 0.3                           # travels away from the camera's side
        d[1] = abs(float(d[1])) * 0.6 + float(d[1]) * 0.4       # more often from above (travels down, +y)
        d = d / d.norm()
        temp = _u(gen, 0, 1)[0]
        light = torch.tensor([1.0, 0.9, 0.75]) * (1 - temp) + torch.tensor([0.8, 0.9, 1.05]) * temp
        light = light * _u(gen, *LIGHT_INTENSITY)[0]
    else:
        sh[:, 0] = 0.6 / math.pi
        d = torch.tensor([0.0, 0.3, 1.0])
        d = d / d.norm()
        light = torch.full((3,), 0.7)
    p["sh"], p["light_dir"], p["light_colour"] = sh, d, light        # light_dir: direction light travels
    # ---------------- camera and placement
    kind = "normal"
    if cfg.camera:
        r = float(_u(gen, 0, 1))
        if r < cfg.p_far:
            kind = "far"
        elif cfg.truncation and r < cfg.p_far + cfg.p_truncated:
            kind = "close"
    p["placement"] = torch.tensor(("normal", "far", "close").index(kind))
    if cfg.camera:
        p["fov_deg"] = _u(gen, *FOV_DEG)[0]
        p["tilt_deg"] = _u(gen, *TILT_DEG)[0]
        p["roll_deg"] = _u(gen, *ROLL_DEG)[0]
        p["height_frac"] = _u(gen, *HEIGHT_FRAC[kind])[0]
        if kind == "close":
            p["anchor"] = 0.1 + 0.8 * torch.rand(2, generator=gen)           # anywhere but the very edge
        else:
            p["anchor"] = 0.5 + (torch.rand(2, generator=gen) - 0.5) * 0.3     # centre region
    else:
        p["fov_deg"], p["tilt_deg"], p["roll_deg"] = torch.tensor(55.0), torch.tensor(0.0), torch.tensor(0.0)
        p["height_frac"], p["anchor"] = torch.tensor(0.8), torch.tensor([0.5, 0.5])
    # ---------------- occluders: active, target (0 left hand, 1 right hand, 2 any body point), geometry
    active = torch.zeros(NUM_OCCLUDERS, dtype=torch.bool)
    if cfg.occluders and float(_u(gen, 0, 1)) < cfg.p_occluder:
        active[0] = True
        active[1] = bool(float(_u(gen, 0, 1)) < 0.3)
    p["occ_active"] = active
    p["occ_target"] = torch.randint(0, 24 + 4, (NUM_OCCLUDERS,), generator=gen)   # >= 24: a hand
    p["occ_depth"] = _u(gen, *OCCLUDER_DEPTH_FRAC, NUM_OCCLUDERS)
    p["occ_size"] = _u(gen, *OCCLUDER_SIZE_M, NUM_OCCLUDERS, 2)
    p["occ_offset"] = _u(gen, -0.5, 0.5, NUM_OCCLUDERS, 2)
    p["occ_angle"] = _u(gen, -0.6, 0.6, NUM_OCCLUDERS)
    # ---------------- image degradations
    blur = cfg.motion_blur and float(_u(gen, 0, 1)) < cfg.p_motion_blur
    p["blur_px"] = _u(gen, *BLUR_PX)[0] if blur else torch.tensor(0.0)
    p["blur_angle"] = _u(gen, 0, math.pi)[0]
    p["noise_std"] = _u(gen, *NOISE_STD)[0] if cfg.noise else torch.tensor(0.0)
    p["jpeg_quality"] = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (1,), generator=gen)[0] if cfg.jpeg else torch.tensor(0)
    p["pixel_seed"] = torch.randint(0, 2 ** 60, (1,), generator=gen)[0]   # x4 + stream stays in int64
    return p


def skin_colour(tone: torch.Tensor, default: torch.Tensor) -> torch.Tensor:
    """Linear RGB skin colours ``(N, 3)`` from tones ``(N,)`` in [0, 1] (< 0: ``default``)."""
    t = tone.clamp(0, 1).cpu().numpy() * (len(SKIN_TONES_SRGB) - 1)
    i = np.minimum(np.floor(t).astype(int), len(SKIN_TONES_SRGB) - 2)
    f = (t - i)[:, None]
    srgb = (SKIN_TONES_SRGB[i] * (1 - f) + SKIN_TONES_SRGB[i + 1] * f) / 255
    lin = torch.as_tensor(srgb_to_linear(srgb), dtype=torch.float32, device=tone.device)
    return torch.where(tone[:, None] < 0, default.to(tone.device).expand_as(lin), lin)
