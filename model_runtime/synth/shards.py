"""Shards of synthetic samples on disk: ``DIR/shard_00000.npz`` ... (deterministic bytes).

A shard is a valid ``.npz`` (zip of ``.npy`` members) written with fixed zip timestamps, so
the same ``(config, seed, count, shard size)`` gives byte-identical files on the same device
type and library versions.  Images and crops are stored losslessly as the JPEG stream the
engine decoded them from (CPU path, :attr:`SynthBatch.encoded`) or else as 8-bit PNG
(members ``<field>_enc`` + ``<field>_offsets``; version 1 shards, read too, named them
``<field>_png``), the mask as packed bits, the rest as ``.npy`` members
(``params.<name>``, ``tags.<name>``); ``config_json`` holds the :class:`SynthConfig`, ``seed``
and ``start`` the stream position.  :func:`read_shards` yields :class:`SynthBatch` per shard
through :func:`model_runtime.core.safe_npz.load_npz` (a damaged file is a
:class:`~model_runtime.core.errors.ModelFileError` naming the file and the member).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..core.capture_file import check_writable_folder
from ..core.errors import InputMissingError, ModelFileError, OutputError
from .batch import TENSOR_FIELDS, SynthBatch

SHARD_VERSION = 2
#: versions :func:`read_shard` reads (1: PNG only, members ``<field>_png``)
READABLE_VERSIONS = (1, 2)
_PNG_FIELDS = ("image", "hand_crop", "face_crop")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.npz"


def check_output_dir(out: Path, overwrite: bool = False) -> Path:
    """Check a shard folder before any work: created if missing (its parent must exist), must be
    writable and hold no shards unless ``overwrite``.  Raises :class:`OutputError` naming it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: the output must be a folder, this is a file")
    if not out.exists():
        if not out.parent.is_dir():
            raise OutputError(f"{out}: the parent folder {out.parent} does not exist")
        try:
            out.mkdir()
        except OSError as e:
            raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    check_writable_folder(out, out)
    if not overwrite and any(out.glob("shard_*.npz")):
        raise OutputError(f"{out}: the folder already holds shards; choose another folder or pass --overwrite")
    return out


def _png(img_chw: np.ndarray) -> bytes:
    import cv2

    hwc = np.ascontiguousarray(img_chw.transpose(1, 2, 0)[..., ::-1])
    ok, buf = cv2.imencode(".png", hwc, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OutputError("cannot encode a PNG image")
    return buf.tobytes()


def _u8(x: torch.Tensor) -> np.ndarray:
    return torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()


def encode(batch: SynthBatch, config_json: str, seed: int) -> dict[str, np.ndarray]:
    """The arrays of a shard (see module docstring): each image is its JPEG stream from
    ``batch.encoded`` where there is one (decoding it gives the image exactly), else a PNG."""
    arrays: dict[str, np.ndarray] = {"shard_version": np.array(SHARD_VERSION), "config_json": np.array(config_json),
                                     "seed": np.array(int(seed), np.int64)}
    for name in TENSOR_FIELDS:
        t = getattr(batch, name)
        if name in _PNG_FIELDS:
            n = int(np.prod(t.shape[:-3]))
            have = batch.encoded.get(name)
            have = have if have is not None and len(have) == n else [None] * n
            if any(b is None for b in have):
                imgs = _u8(t).reshape(-1, *t.shape[-3:])
                have = [b if b is not None else _png(im) for b, im in zip(have, imgs)]   # an encoder call each
            blobs = have
            arrays[f"{name}_enc"] = np.frombuffer(b"".join(blobs), np.uint8)
            arrays[f"{name}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
            arrays[f"{name}_shape"] = np.array(t.shape, np.int64)
        elif name == "mask":
            m = t.detach().cpu().numpy().astype(bool)
            arrays["mask_bits"] = np.packbits(m.reshape(-1))
            arrays["mask_shape"] = np.array(m.shape, np.int64)
        else:
            arrays[name] = t.detach().cpu().numpy()
    for k, v in batch.params.items():
        arrays[f"params.{k}"] = v.detach().cpu().numpy()
    for k, v in batch.tags.items():
        arrays[f"tags.{k}"] = v.detach().cpu().numpy()
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` with fixed timestamps (deterministic bytes), atomically (``.tmp`` + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
                stored = key.endswith("_enc") or key == "mask_bits"
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue(), compresslevel=6 if not stored else None)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the shard ({e.strerror or e})") from None


def write_shard(path: Path, batch: SynthBatch, config_json: str, seed: int) -> None:
    write_npz(Path(path), encode(batch, config_json, seed))


def _decode_images(src: str, key: str, member: str, data: np.ndarray, offsets: np.ndarray, shape) -> torch.Tensor:
    """The ``shape (..., 3, h, w)`` float images of the PNG/JPEG streams ``data`` cut at ``offsets``."""
    import cv2

    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape[:-3]))
    if len(offsets) != n + 1 or offsets[-1] != len(data):
        raise ModelFileError(src, f"{key}_offsets", f"does not index {n} images in '{member}'")
    out = np.empty((n,) + shape[-2:] + (3,), np.uint8)
    for i in range(n):                                         # per image (a decoder call each)
        im = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        if im is None or im.shape != (shape[-2], shape[-1], 3):
            raise ModelFileError(src, member, f"image {i} is not a {shape[-1]}x{shape[-2]} PNG/JPEG")
        cv2.cvtColor(im, cv2.COLOR_BGR2RGB, dst=out[i])
    return torch.from_numpy(out).permute(0, 3, 1, 2).reshape(shape).contiguous().float().div_(255)


def read_shard(path: Path | str, device="cpu") -> SynthBatch:
    """One shard -> :class:`SynthBatch` on ``device``."""
    from ..core.safe_npz import load_npz, npz_members

    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise InputMissingError(f"{path}: shard file not found")
    members = npz_members(path)
    version = int(load_npz(path, ["shard_version"], what="shard")["shard_version"])
    if version not in READABLE_VERSIONS:
        raise ModelFileError(src, "shard_version", f"is {version}, this build reads {READABLE_VERSIONS}")
    blob = "png" if version == 1 else "enc"
    need = ["shard_version", "mask_bits", "mask_shape"] + [n for n in TENSOR_FIELDS if n not in _PNG_FIELDS + ("mask",)]
    need += [f"{n}_{s}" for n in _PNG_FIELDS for s in (blob, "offsets", "shape")]
    z = load_npz(path, need, optional=[k for k in members if k.startswith(("params.", "tags."))],
                 max_bytes=8 << 30, what="shard")
    kw = {}
    for name in TENSOR_FIELDS:
        if name in _PNG_FIELDS:
            kw[name] = _decode_images(src, name, f"{name}_{blob}", z[f"{name}_{blob}"], z[f"{name}_offsets"],
                                      z[f"{name}_shape"])
        elif name == "mask":
            shape = tuple(int(s) for s in z["mask_shape"])
            bits = np.unpackbits(z["mask_bits"])
            if bits.size < int(np.prod(shape)):
                raise ModelFileError(src, "mask_bits", f"holds {bits.size} bits, fewer than the mask {shape}")
            kw[name] = torch.from_numpy(bits[: int(np.prod(shape))].reshape(shape).astype(bool))
        else:
            kw[name] = torch.from_numpy(np.ascontiguousarray(z[name]))
    n = kw["image"].shape[0]
    for name, t in kw.items():
        if t.shape[0] != n:
            raise ModelFileError(src, name, f"has {t.shape[0]} rows for {n} images")
    kw["params"] = {k[7:]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in z.items() if k.startswith("params.")}
    kw["tags"] = {k[5:]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in z.items() if k.startswith("tags.")}
    return SynthBatch(**kw).to(device)


def shard_paths(folder: Path | str) -> list[Path]:
    """The shards of ``folder`` in order; raises InputMissingError naming the folder when it has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputMissingError(f"{folder}: shard folder not found")
    paths = sorted(folder.glob("shard_*.npz"))
    if not paths:
        raise InputMissingError(f"{folder}: no shard_*.npz files")
    return paths


def read_shards(folder: Path | str, device="cpu") -> Iterator[SynthBatch]:
    """Yield one :class:`SynthBatch` per shard of ``folder`` (in order), on ``device``."""
    for p in shard_paths(folder):
        yield read_shard(p, device)


def shard_config(path: Path | str) -> dict:
    """The generator settings recorded in a shard: ``{"config": {...}, "seed": s}``."""
    from ..core.safe_npz import load_npz

    z = load_npz(path, ["config_json", "seed"], what="shard")
    return {"config": json.loads(str(z["config_json"])), "seed": int(z["seed"])}
