"""DetNet weights files: save, load and validate (one clear ModelFileError line on bad files).

A weights file is a ``torch.save`` dict read with ``weights_only=True``::

    {"format": "detnet", "version": 1, "config": DetNetConfig.to_dict(),
     "state_dict": {name: tensor (float16 for shipped files)}, "meta": {...}}
"""
from __future__ import annotations

from pathlib import Path
from typing import Final

import torch

from ...core.errors import ModelFileError
from .config import DetNetConfig
from .network import DetNet

FORMAT: Final[str] = "detnet"
VERSION: Final[int] = 1
WEIGHTS_DIR: Final[Path] = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS: Final[Path] = WEIGHTS_DIR / "detnet_small.pt"


def save_weights(net: DetNet, path: Path, meta: dict | None = None, half: bool = True) -> Path:
    """Write ``net`` (float16 tensors when ``half``; BN buffers included) with its config and ``meta``."""
    sd = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
          for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    torch.save({"format": FORMAT, "version": VERSION, "config": net.config.to_dict(), "state_dict": sd,
                "meta": dict(meta or {})}, tmp)
    tmp.replace(path)
    return path


def load_weights(path: Path, device: str | torch.device = "cpu") -> tuple[DetNet, dict]:
    """Build the network a weights file describes and load it (eval mode, float32).

    Raises:
        ModelFileError: missing or unreadable file, wrong format/version, bad config, a missing,
            extra, mis-shaped or non-finite tensor (the message names the file and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, None, "is missing (train one: python -m model_runtime train detnet)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, wrong file type
        raise ModelFileError(path, None, f"is not a readable DetNet weights file ({type(e).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelFileError(path, "format", f"must be '{FORMAT}'")
    if d.get("version") != VERSION:
        raise ModelFileError(path, "version", f"is {d.get('version')!r}, this code reads version {VERSION}")
    try:
        config = DetNetConfig.from_dict(dict(d.get("config") or {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError(path, "config", f"is invalid ({e})") from None
    net = DetNet(config)
    sd = d.get("state_dict")
    if not isinstance(sd, dict):
        raise ModelFileError(path, "state_dict", "is missing")
    want = net.state_dict()
    for name, ref in want.items():
        t = sd.get(name)
        if not isinstance(t, torch.Tensor):
            raise ModelFileError(path, f"state_dict.{name}", "is missing")
        if t.shape != ref.shape:
            raise ModelFileError(path, f"state_dict.{name}", f"has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelFileError(path, f"state_dict.{name}", "holds NaN or infinite values")
    extra = sorted(set(sd) - set(want))
    if extra:
        raise ModelFileError(path, f"state_dict.{extra[0]}", "is not a tensor of this network")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    return net.to(device).eval(), dict(d.get("meta") or {})
