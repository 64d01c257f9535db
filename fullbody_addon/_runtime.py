"""Where the add-on finds the numpy-only parts of ``model_runtime``.

In the installed extension, ``build_addon.py`` ships ``model_runtime`` inside the
add-on package (``<extension>/model_runtime``); in a repository checkout it is
the top-level package next to ``fullbody_addon``.  Only numpy-only modules are
imported here: Blender's Python never imports torch, cv2 or mediapipe.
"""
from __future__ import annotations

from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent

if (ADDON_DIR / "model_runtime" / "__init__.py").is_file():
    from .model_runtime.core import camera_source, capture_file, errors, lbs, options, protocol, rotations, skeleton  # noqa: F401
    from .model_runtime.models import body_model, face_model  # noqa: F401
    from .model_runtime.models.load import load_body_model, load_face_model  # noqa: F401
    RUNTIME_PARENT = ADDON_DIR
else:
    from model_runtime.core import camera_source, capture_file, errors, lbs, options, protocol, rotations, skeleton  # noqa: F401
    from model_runtime.models import body_model, face_model  # noqa: F401
    from model_runtime.models.load import load_body_model, load_face_model  # noqa: F401
    RUNTIME_PARENT = ADDON_DIR.parent

#: the folder to put on ``PYTHONPATH`` so ``python -m model_runtime`` finds this copy
RUNTIME_PATH = str(RUNTIME_PARENT)


def optional_module(name: str):
    """Import ``model_runtime.models.<name>`` if this build has it (e.g. ``full_model``), else None."""
    import importlib

    pkg = body_model.__package__
    try:
        return importlib.import_module(f"{pkg}.{name}")
    except ImportError:
        # absent in this build, or needs a package Blender's Python lacks (e.g. scipy)
        return None
