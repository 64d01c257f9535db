"""The skin test of the appearance fit's samples (model_runtime/face/skin.py)."""
import numpy as np
import torch

from model_runtime.face.skin import skin_weight

#: the Monk Skin Tone scale (Google, CC BY 4.0): ten skin tones from the lightest to the darkest
MONK = ("f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a", "292420")


def _linear(hexes):
    s = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in hexes], np.float64)
    return torch.tensor((s / 255.0) ** 2.2)


def test_every_monk_skin_tone_is_skin():
    assert skin_weight(_linear(MONK)).tolist() == [1.0] * len(MONK)


def test_neutral_colours_and_clothes_are_not_skin():
    others = ("000000", "141414", "282828", "808080", "c8c8c8", "ffffff",   # black headband ... white shirt
              "e6e6eb", "1e3c8c", "2850a0", "3c8c3c", "a0c8f0", "5a2d82")   # bluish white, blues, green, purple
    assert skin_weight(_linear(others)).tolist() == [0.0] * len(others)


def test_skin_weight_keeps_the_batch_shape():
    x = _linear(MONK[:4] + ("000000", "ffffff")).reshape(2, 3, 3)
    w = skin_weight(x)
    assert w.shape == (2, 3) and w.dtype == x.dtype
    np.testing.assert_array_equal(w.numpy(), [[1, 1, 1], [1, 0, 0]])
