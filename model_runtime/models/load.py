"""Body and face models by name: ``"builtin"`` (the shipped assets) or an official file.

The one place that knows both the data classes (:mod:`.body_model`, :mod:`.face_model`, which
also read the built-in assets) and the official-file readers (:mod:`.loaders`), which import
the data classes; so neither imports the other back.  Numpy only (the Blender add-on uses it).
"""
from __future__ import annotations

from pathlib import Path

from .body_model import BodyModel, load_builtin_body
from .face_model import FaceModel, load_builtin_face
from .loaders.bfm import load_bfm
from .loaders.smplh import load_smplh

__all__ = ["load_body_model", "load_face_model"]


def load_body_model(spec: str | Path | None = None) -> BodyModel:
    """``None``/``"builtin"`` -> built-in; otherwise an official SMPL-H file (.npz or .pkl)."""
    if spec is None or str(spec) == "builtin":
        return load_builtin_body()
    return load_smplh(spec)


def load_face_model(spec: str | Path | None = None, expression_basis: str | Path | None = None) -> FaceModel:
    """``None``/``"builtin"`` -> built-in; otherwise a BFM ``.mat`` (see :mod:`.loaders.bfm`)."""
    if spec is None or str(spec) == "builtin":
        return load_builtin_face()
    return load_bfm(spec, expression_basis=expression_basis)
