"""Camera intrinsics: ``K`` from a field of view, and calibration files.

The one place where a pinhole ``K`` is built.  The default field of view is
:data:`~model_runtime.core.options.DEFAULT_FOV_DEG` (60 degrees across the longer
image side, a typical webcam / phone main camera), used by captures when no
calibration is given.  Code that renders or fits *crops* passes its own field of
view (the face code: :data:`model_runtime.face.render.FACE_CROP_FOV_DEG`).

numpy + standard library only (cv2 is imported only to read OpenCV ``.yml/.xml``
calibrations), so Blender's Python can import it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..core.errors import InputMissingError, ModelFileError
from ..core.options import DEFAULT_FOV_DEG
from ..core.safe_npz import load_npz

__all__ = ["DEFAULT_FOV_DEG", "intrinsics_from_fov", "load_calibration"]


def intrinsics_from_fov(image_size: tuple[int, int], fov_deg: float = DEFAULT_FOV_DEG,
                        focal_px: float | None = None) -> np.ndarray:
    """Pinhole ``K (3, 3)`` float64 for ``image_size = (width, height)`` px.

    ``fov_deg`` spans the longer image side (default :data:`DEFAULT_FOV_DEG`, 60 degrees, the
    one default of the project, defined in :mod:`model_runtime.core.options`); square pixels;
    principal point at the image centre ``(W/2, H/2)`` (pixel (0, 0)'s top-left corner is the
    origin).  ``focal_px`` (px), when given and non-zero, is the focal length and ``fov_deg``
    is ignored.

    Raises:
        ValueError: ``fov_deg`` outside [1, 179] (when it is used).
    """
    w, h = image_size
    if focal_px:
        f = float(focal_px)
    elif not 1.0 <= fov_deg <= 179.0:
        raise ValueError(f"--fov must be in [1, 179] degrees, got {fov_deg}")
    else:
        f = 0.5 * max(w, h) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])


def load_calibration(path: Path | str, image_size: tuple[int, int]) -> np.ndarray:
    """Read ``K (3, 3)`` from a calibration file and fit it to ``image_size (W, H)``.

    Formats:
      * ``.json``: ``{"K": [[fx,0,cx],[0,fy,cy],[0,0,1]]}`` (or ``"camera_matrix"``), or
        ``{"fx":..,"fy":..,"cx":..,"cy":..}``; optional ``"image_size": [W, H]``.
      * ``.yml/.yaml/.xml`` (OpenCV ``FileStorage``, e.g. from ``calibrateCamera``): node
        ``camera_matrix`` or ``K``; optional ``image_width``/``image_height``.
      * ``.npz``: array ``K`` or ``camera_K`` (a capture file works); optional ``image_size``.

    If the file gives an image size different from the source's with the same
    aspect ratio, K is rescaled; a different aspect ratio is an error.

    Raises:
        InputMissingError: no such file.
        ModelFileError: unreadable file, missing/mis-shaped field, incompatible size.
    """
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"{path}: calibration file does not exist")
    ext = path.suffix.lower()
    calib_size: tuple[float, float] | None = None
    try:
        if ext == ".json":
            d = json.loads(path.read_text())
            if "K" in d or "camera_matrix" in d:
                field = "K" if "K" in d else "camera_matrix"
                K = np.asarray(d[field], dtype=np.float64)
            elif all(k in d for k in ("fx", "fy", "cx", "cy")):
                field = "fx"
                K = np.array([[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], np.float64)
            else:
                raise ModelFileError(str(path), "K", "is missing (give K, camera_matrix or fx/fy/cx/cy)")
            if "image_size" in d:
                calib_size = tuple(float(v) for v in d["image_size"])
        elif ext in (".yml", ".yaml", ".xml"):
            import cv2  # lazily: Blender's Python has no cv2

            fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
            if not fs.isOpened():
                raise ModelFileError(str(path), None, "is not a readable OpenCV FileStorage file")
            field = "camera_matrix" if not fs.getNode("camera_matrix").empty() else "K"
            K = fs.getNode(field).mat()
            if K is None:
                raise ModelFileError(str(path), "camera_matrix", "is missing")
            wn, hn = fs.getNode("image_width"), fs.getNode("image_height")
            if not wn.empty() and not hn.empty():
                calib_size = (wn.real(), hn.real())
            fs.release()
        elif ext == ".npz":
            z = load_npz(path, (), optional=("K", "camera_K", "image_size"))
            field = "K" if "K" in z else "camera_K"
            if field not in z:
                raise ModelFileError(str(path), "K", "is missing (give K or camera_K)")
            K = np.asarray(z[field], np.float64)
            if "image_size" in z:
                calib_size = tuple(float(v) for v in z["image_size"])
        else:
            raise ModelFileError(str(path), None, f"has an unknown calibration format '{ext}' "
                                                  "(use .json, .yml/.yaml/.xml or .npz)")
    except ModelFileError:
        raise
    except Exception as e:  # JSON syntax, bad zip, bad numbers
        raise ModelFileError(str(path), None, f"cannot be read as a calibration ({e})") from e
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ModelFileError(str(path), field, f"must be a finite 3x3 matrix with fx, fy > 0, got {K.tolist()}")
    if calib_size is not None and tuple(calib_size) != tuple(float(s) for s in image_size):
        sx, sy = image_size[0] / calib_size[0], image_size[1] / calib_size[1]
        if abs(sx - sy) > 1e-3 * max(sx, sy):
            raise ModelFileError(str(path), "image_size",
                                 f"is {calib_size[0]:g}x{calib_size[1]:g}, the source is "
                                 f"{image_size[0]}x{image_size[1]}: different aspect ratio")
        K = np.diag([sx, sy, 1.0]) @ K
    return K
