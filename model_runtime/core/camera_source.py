"""Where a capture's focal length came from, said to a person: the ``camera_source`` of the capture file
(:data:`model_runtime.core.capture_file.STATIC_DEFAULTS`) in words, with the field of view.  Numpy only:
the capture CLI and the add-on's import report both print it."""
from __future__ import annotations

from typing import Final

import numpy as np

#: how a person is told where ``camera_K``'s focal came from (``camera_source``)
CAMERA_SOURCE_WORDS: Final[dict[str, str]] = {
    "calibration": "from the calibration file", "fov": "as given (--fov)", "metadata": "from the file's metadata",
    "scene": "measured on the scene's vanishing points", "estimated": "estimated from the body",
    "default": "the default guess: give --fov or a calibration if you know the lens",
}


def describe_camera(K, image_size, source: str) -> str:
    """One line: the field of view across the longer image side of ``K (3, 3)`` for ``image_size (W, H)``
    and where its focal came from, e.g. ``"46.9 deg, measured on the scene's vanishing points"``."""
    K = np.asarray(K, np.float64)
    W, H = (int(v) for v in np.asarray(image_size).reshape(-1)[:2])
    f = K[0, 0] if W >= H else K[1, 1]
    fov = 2.0 * np.degrees(np.arctan(0.5 * max(W, H) / f)) if f > 0 else float("nan")
    return f"{fov:.1f} deg, {CAMERA_SOURCE_WORDS.get(str(source), str(source))}"
