"""Keypoint detectors: the interface (:mod:`.base`) and the registry of backends by name.

Backends are listed in :data:`BACKENDS` as ``"module:class"`` (module relative to this
package) and imported on first use, so choosing or validating a name loads no model
library.  A backend class takes ``device`` and its own keyword options and implements
:class:`~.base.Detector`.  Adding one is one line in :data:`BACKENDS` (its name also goes
into the options schema, :data:`model_runtime.core.options.DETECTORS`, which the CLI, ``serve``
and the add-on validate against without importing this package).

Example::

    det = make_detector("mediapipe", device="cpu")
    try:
        d = det.detect(frame_bgr, timestamp_ms=33 * i)
        if d.person:
            xy = d.body_2d[:, :2]
    finally:
        det.close()
"""
from __future__ import annotations

import importlib
from typing import Final

from ..core.options import DETECTORS, DEVICES, CaptureOptions, resolve_device
from .base import Detection, Detector, HandDetection

__all__ = ["BACKENDS", "Detection", "Detector", "HandDetection", "add_detector_arguments",
           "detector_from_options", "make_detector"]

#: detector name -> ``"module:class"``; MediaPipe Holistic: :mod:`.mediapipe`
BACKENDS: Final[dict[str, str]] = {
    "mediapipe": ".mediapipe:MediaPipeDetector",
    "detnet": ".detnet:DetNetDetector",
}


def make_detector(name: str = "mediapipe", device: str = "cpu", **options) -> Detector:
    """Create the detector registered as ``name`` in :data:`BACKENDS`.

    Args:
        device: ``"cpu"`` or ``"cuda"``; MediaPipe's Python solutions run on CPU here
            whatever is asked.
        **options: backend options, e.g. ``model_complexity=1`` (0, 1, 2; only 1 ships
            with the wheel, the others raise ModelFileError instead of downloading),
            ``refine_face_landmarks=False`` for MediaPipe.

    Raises:
        ValueError: unknown detector name.
        ModelFileError: a file the backend needs is missing.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown detector '{name}' (choose from {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module, __name__), cls)(device=device, **options)


def add_detector_arguments(parser) -> None:
    """Add the ``--detector``/``--device``/``--model-complexity`` options shared by the evals."""
    parser.add_argument("--detector", choices=DETECTORS, default="mediapipe",
                        help="keypoint detector backend (default: mediapipe)")
    parser.add_argument("--device", default=CaptureOptions().device, choices=DEVICES,
                        help="torch device (default auto: CUDA if available)")
    parser.add_argument("--model-complexity", type=int, choices=(0, 1, 2), default=1,
                        help="MediaPipe pose model complexity: 0 lite, 1 full, 2 heavy (default: 1, the "
                             "only one the mediapipe wheel ships; 0/2 need their .tflite installed by hand)")
    parser.add_argument("--detnet-weights", default=None, metavar="PT",
                        help="--detector detnet: a weights file other than the shipped one (e.g. the best.pt "
                             "of a 'train detnet' run)")


def detector_from_options(opts) -> Detector:
    """The detector asked for by ``detector``/``device``/``model_complexity``: the flags of
    :func:`add_detector_arguments` or a :class:`~model_runtime.core.options.CaptureOptions`."""
    kw = {"model_complexity": opts.model_complexity} if opts.detector == "mediapipe" else {}
    if opts.detector == "detnet" and getattr(opts, "detnet_weights", None):
        kw["weights"] = opts.detnet_weights
    return make_detector(opts.detector, device=resolve_device(opts.device), **kw)
