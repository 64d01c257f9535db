"""Which face stage a capture uses: ``make_face_stage(mode, face_model, device)`` for ``--face fit|net|net+fit``.

A module of its own because it needs both :mod:`.stage` (the fit) and :mod:`.facenet_stage`
(FaceNet, which builds on :mod:`.stage`): no import cycle.
"""
from __future__ import annotations

from .stage import FaceStage


def make_face_stage(mode: str, face_model, device: str = "cpu", facenet_weights: str | None = None,
                    facenet_profile: str | None = None) -> FaceStage:
    """The capture's face stage for ``--face`` ``mode``: ``"fit"`` (:class:`.stage.FaceFitStage`), ``"net"``
    (:class:`.facenet_stage.NetFaceStage`: FaceNet every frame) or ``"net+fit"``
    (:class:`.facenet_stage.NetFitFaceStage`: FaceNet initialises the fit).  ``facenet_weights`` /
    ``facenet_profile`` (a path, ``"none"``: no profile expert; None: the defaults) choose FaceNet's files.
    Missing or mismatched FaceNet weights raise :class:`~model_runtime.core.errors.ModelFileError` naming the file."""
    from .fit import FaceFitter
    from .stage import FaceFitStage

    if mode not in ("fit", "net", "net+fit"):
        raise ValueError(f"face mode must be fit, net or net+fit, got {mode!r}")
    if mode == "fit":
        return FaceFitStage(FaceFitter(face_model, device=device))
    from .facenet import FaceNet
    from .facenet_stage import NetFaceStage, NetFitFaceStage

    net = FaceNet(face_model, device=device, weights=facenet_weights, profile=facenet_profile)
    if mode == "net":
        return NetFaceStage(net)
    return NetFitFaceStage(FaceFitter(face_model, device=device), net)
