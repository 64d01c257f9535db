"""Reading the project's versioned ``.npz`` assets (numpy only; Blender can use it).

Every shipped asset stores ``asset_version`` and its arrays; metadata that is
not a model field is stored under keys prefixed ``extra_``.  A missing,
corrupt, wrong-version or incomplete file raises :class:`ModelFileError`
naming the file and the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import ModelFileError

EXTRA_PREFIX = "extra_"


def read_versioned_npz(path: Path | str, version: int, what: str,
                       required: Iterable[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Load ``path`` -> ``(fields, extras)``; checks ``asset_version == version`` and ``required`` keys."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ModelFileError(str(path), None, f"{what} is missing; run tools/build_builtin_assets.py") from None
    except Exception as e:  # zip/npy corruption, truncated file
        raise ModelFileError(str(path), None, f"cannot read {what} ({e})") from e
    with z:
        ver = int(z["asset_version"]) if "asset_version" in z.files else -1
        if ver != version:
            raise ModelFileError(str(path), "asset_version", f"is {ver}, this runtime reads {version}")
        missing = [k for k in required if k not in z.files]
        if missing:
            raise ModelFileError(str(path), missing[0], f"is missing from the {what}")
        try:
            fields = {k: z[k] for k in z.files if not k.startswith(EXTRA_PREFIX)}
            extras = {k[len(EXTRA_PREFIX):]: z[k] for k in z.files if k.startswith(EXTRA_PREFIX)}
        except Exception as e:  # a member that is present in the index but damaged
            raise ModelFileError(str(path), None, f"cannot read {what} ({e})") from e
    return fields, extras
