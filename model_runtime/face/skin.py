"""Which sampled colours are skin (issue 11, item 4: the albedo from the person's skin).

The appearance fit (:meth:`.fit.FaceFitter.fit_appearance`) samples the image under the face mask made
from MediaPipe's landmarks.  Where the landmarks are right that is skin; where they are not, on a
small, turned or downward-looking face, the mask also covers hair, a headband, a shirt or the
background, and the closed-form albedo takes their colour: on courtyard a face seen from above
sampled its black headband (the avatar came out nearly black), on ROMP a footballer's white shirt
(a white-grey avatar).  Skin, whatever its tone and under most daylight and indoor light, has a
narrow chrominance: the classic Chai & Ngan (1999) box in YCbCr, ``Cr`` 133-173 and ``Cb`` 77-127
(8-bit, BT.601), here with ``Cr`` from 130: Chai & Ngan's lower bound drops the darkest swatch of the
Monk Skin Tone scale (#292420, ``Cr`` 130.8; its lightest, #f6ede4, is at 133.2), and a skin filter
must not drop anyone's skin.  It keeps the ten Monk tones and drops neutral colours (black ``Cr`` 128,
white, grey) and most clothing (``tests/test_face_skin.py``).  :func:`skin_weight` applies it to the fit's samples; a keyframe whose samples are mostly
not skin (:data:`MIN_SKIN_SHARE`) leaves the clip's albedo as it was.
"""
from __future__ import annotations

from typing import Final

import torch

from ..synth.postfx import linear_to_srgb

#: Chai & Ngan's skin box (8-bit BT.601 chrominance), Cr from 130 to keep every Monk skin tone
SKIN_CR: Final[tuple[float, float]] = (130.0, 173.0)
SKIN_CB: Final[tuple[float, float]] = (77.0, 127.0)
#: a keyframe teaches the albedo only when at least this share of its visible samples is skin
MIN_SKIN_SHARE: Final[float] = 0.3


def skin_weight(linear_rgb: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` linear RGB in [0, 1] (``(v / 255) ** 2.2`` of 8-bit video, as the fits make it) ->
    ``(...)`` float, 1 where the colour lies in the skin box of the module docstring, else 0."""
    rgb = 255.0 * linear_to_srgb(linear_rgb)
    r, g, b = rgb.unbind(-1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = 0.713 * (r - y) + 128.0
    cb = 0.564 * (b - y) + 128.0
    ok = (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])
    return ok.to(linear_rgb.dtype)


__all__ = ["MIN_SKIN_SHARE", "SKIN_CB", "SKIN_CR", "skin_weight"]
