"""Reading the project's versioned ``.npz`` assets (numpy only; Blender can use it).

Every shipped asset stores ``asset_version`` and its arrays; metadata that is
not a model field is stored under keys prefixed ``extra_``.  A missing,
corrupt, wrong-version or incomplete file raises :class:`ModelFileError`
naming the file and the field; files are read by :func:`.safe_npz.load_npz`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Final, Iterable

import numpy as np

from .errors import ModelFileError
from .safe_npz import load_npz

EXTRA_PREFIX = "extra_"
#: the shipped assets (built-in models, correspondence, body map): ``model_runtime/assets``
ASSET_DIR: Final[Path] = Path(__file__).resolve().parents[1] / "assets"


def read_versioned_npz(path: Path | str, version: int, what: str,
                       required: Iterable[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Load ``path`` -> ``(fields, extras)``; checks ``asset_version == version`` and ``required`` keys."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(str(path), None, f"{what} is missing; run tools/build_builtin_assets.py")
    try:
        z = load_npz(path)
    except ModelFileError as e:  # zip/npy corruption, truncated file, hostile sizes
        if e.field is not None:
            raise
        detail = e.__cause__ if e.__cause__ is not None else e.problem
        raise ModelFileError(str(path), None, f"cannot read {what} ({detail})") from e
    ver = int(z["asset_version"]) if "asset_version" in z else -1
    if ver != version:
        raise ModelFileError(str(path), "asset_version", f"is {ver}, this runtime reads {version}")
    missing = [k for k in required if k not in z]
    if missing:
        raise ModelFileError(str(path), missing[0], f"is missing from the {what}")
    fields = {k: v for k, v in z.items() if not k.startswith(EXTRA_PREFIX)}
    extras = {k[len(EXTRA_PREFIX):]: v for k, v in z.items() if k.startswith(EXTRA_PREFIX)}
    return fields, extras
