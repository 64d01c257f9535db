"""The focal length a file's own metadata gives (issue 10: "when neither a calibration nor metadata
gives it"), in pixels of the decoded image.

* **Images** (the first image of a folder): EXIF ``FocalLengthIn35mmFilm`` (0xA405, what phones
  write), else ``FocalLength`` (0x920A) with ``FocalPlaneXResolution``/``ResolutionUnit``
  (0xA20E/0xA210, what cameras write; scaled from ``ExifImageWidth`` 0xA002 to the decoded width).
* **Videos** (MP4/MOV): the QuickTime metadata key
  ``com.apple.quicktime.camera.focal_length.35mm_equivalent`` (iPhone videos), read from the
  ``moov/meta`` ``keys``/``ilst`` boxes without decoding anything.

A 35 mm equivalent focal ``f35`` is converted through the diagonal, as the 35 mm equivalent is
defined: ``f_px = f35 / 43.27 mm * diagonal_px``.  A value outside
:data:`.focal.FOV_RANGE_DEG` is not used (metadata copied from the original by an editor that
resized the image without updating it, a digital zoom): the reason is returned beside ``None``.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Final

#: diagonal of the 36 x 24 mm frame
FULL_FRAME_DIAGONAL_MM: Final[float] = math.hypot(36.0, 24.0)
#: QuickTime metadata key of iPhone videos
QUICKTIME_KEY: Final[bytes] = b"com.apple.quicktime.camera.focal_length.35mm_equivalent"
#: EXIF tags
EXIF_IFD, FOCAL_35MM, FOCAL_MM, PLANE_X_RES, PLANE_UNIT, EXIF_WIDTH = 0x8769, 0xA405, 0x920A, 0xA20E, 0xA210, 0xA002
#: FocalPlaneResolutionUnit -> millimetres
_UNIT_MM: Final[dict[int, float]] = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}
#: boxes that contain boxes, on the way to ``moov/meta`` (and ``moov/udta/meta``)
_CONTAINERS: Final[tuple[bytes, ...]] = (b"moov", b"udta", b"meta")
#: read at most this much of a box tree (the metadata boxes are small; ``mdat`` is skipped)
_MAX_BOX: Final[int] = 16 << 20


def focal_px_from_35mm(f35: float, image_size: tuple[int, int]) -> float:
    """35 mm equivalent focal (mm) -> focal in pixels of an ``image_size (w, h)`` image (diagonal)."""
    return float(f35) / FULL_FRAME_DIAGONAL_MM * math.hypot(*image_size)


def plausible(f_px: float, image_size: tuple[int, int]) -> bool:
    """The field of view across the longer side is inside :data:`.focal.FOV_RANGE_DEG`."""
    from .focal import FOV_RANGE_DEG

    if not (math.isfinite(f_px) and f_px > 0):
        return False
    fov = math.degrees(2 * math.atan(max(image_size) / (2 * f_px)))
    return FOV_RANGE_DEG[0] <= fov <= FOV_RANGE_DEG[1]


def _checked(f_px: float | None, image_size: tuple[int, int], what: str) -> tuple[float | None, str]:
    if f_px is None:
        return None, f"{what}: none"
    if not plausible(f_px, image_size):
        return None, f"{what}: {f_px:.0f} px is outside the plausible fields of view (ignored)"
    return f_px, what


# ----------------------------------------------------------------------------- images (EXIF)
def focal_from_image(path: str | Path, image_size: tuple[int, int]) -> tuple[float | None, str]:
    """``(focal px or None, what was found)`` from the EXIF of the image at ``path``; ``image_size
    (w, h)`` is the decoded (upright) size.  Unreadable or absent EXIF is ``None``, never an error."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            exif = im.getexif()
            ifd = exif.get_ifd(EXIF_IFD)
    except Exception:                       # noqa: BLE001 - metadata is optional; any failure = none
        return None, "EXIF: unreadable"
    f35 = _number(ifd.get(FOCAL_35MM))
    if f35:
        return _checked(focal_px_from_35mm(f35, image_size), image_size, f"EXIF 35 mm equivalent {f35:g} mm")
    f_mm, res, unit = _number(ifd.get(FOCAL_MM)), _number(ifd.get(PLANE_X_RES)), ifd.get(PLANE_UNIT, 2)
    if f_mm and res and int(unit) in _UNIT_MM:
        px_per_mm = res / _UNIT_MM[int(unit)]
        width = _number(ifd.get(EXIF_WIDTH)) or max(image_size)
        f_px = f_mm * px_per_mm * max(image_size) / width
        return _checked(f_px, image_size, f"EXIF focal length {f_mm:g} mm on the focal plane")
    return None, "EXIF: no focal length"


def _number(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) and f > 0 else None


# ----------------------------------------------------------------------------- videos (QuickTime)
def _header(head: bytes, room: int) -> tuple[bytes, int, int] | None:
    """An ISO-BMFF box header at the start of ``head`` (at least 8 bytes, 16 for a 64-bit size) with
    ``room`` bytes left in its parent: ``(type, header length, box size)``, or None when malformed
    (size 0 means "to the end of the parent")."""
    if len(head) < 8 or room < 8:
        return None
    size, kind = struct.unpack(">I4s", head[:8])
    length = 8
    if size == 1:
        if len(head) < 16 or room < 16:
            return None
        size, length = struct.unpack(">Q", head[8:16])[0], 16
    elif size == 0:
        size = room
    if size < length or size > room:
        return None
    return kind, length, size


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """``(type, payload start, payload end)`` of the ISO-BMFF boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while (h := _header(data[pos:pos + 16], end - pos)) is not None:
        kind, length, size = h
        yield kind, pos + length, pos + size
        pos += size


def _read_moov(path: Path) -> bytes | None:
    """The ``moov`` box of an MP4/MOV (top-level boxes walked by their headers; ``mdat`` skipped)."""
    with open(path, "rb") as f:
        total = f.seek(0, 2)
        pos = 0
        while True:
            f.seek(pos)
            h = _header(f.read(16), total - pos)
            if h is None:
                return None
            kind, _, size = h
            if kind == b"moov":
                if size > _MAX_BOX:
                    return None
                f.seek(pos)
                return f.read(size)
            pos += size


def _meta_value(data: bytes, meta_start: int, meta_end: int) -> float | None:
    """The focal key's value in one ``meta`` box (QuickTime ``keys`` + ``ilst``)."""
    keys: list[bytes] = []
    ilst = None
    for kind, s, e in _boxes(data, meta_start, meta_end):
        if kind == b"keys" and e - s >= 8:
            n = struct.unpack(">I", data[s + 4:s + 8])[0]
            pos = s + 8
            for _ in range(n):
                if pos + 8 > e:
                    break
                size = struct.unpack(">I", data[pos:pos + 4])[0]
                if size < 8:
                    break
                keys.append(data[pos + 8:pos + size])
                pos += size
        elif kind == b"ilst":
            ilst = (s, e)
    if ilst is None or QUICKTIME_KEY not in keys:
        return None
    want = keys.index(QUICKTIME_KEY) + 1                      # ilst items are 1-based key indices
    for kind, s, e in _boxes(data, *ilst):
        if struct.unpack(">I", kind)[0] != want:
            continue
        for dkind, ds, de in _boxes(data, s, e):
            if dkind == b"data" and de - ds >= 8:
                type_code = struct.unpack(">I", data[ds:ds + 4])[0] & 0xFFFFFF
                value = data[ds + 8:de]
                return _typed(type_code, value)
    return None


def _typed(type_code: int, value: bytes) -> float | None:
    """QuickTime well-known data types: 1 UTF-8, 21/22 signed/unsigned integer, 23/24 float32/64."""
    try:
        if type_code == 1:
            return _number(value.decode("utf-8").strip())
        if type_code in (21, 22) and len(value) in (1, 2, 4, 8):
            fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[len(value)]
            return _number(struct.unpack(">" + (fmt if type_code == 21 else fmt.upper()), value)[0])
        if type_code == 23 and len(value) == 4:
            return _number(struct.unpack(">f", value)[0])
        if type_code == 24 and len(value) == 8:
            return _number(struct.unpack(">d", value)[0])
    except (UnicodeDecodeError, struct.error):
        return None
    return None


def focal_from_video(path: str | Path, image_size: tuple[int, int]) -> tuple[float | None, str]:
    """``(focal px or None, what was found)`` from an MP4/MOV's QuickTime metadata; ``image_size
    (w, h)`` the decoded (upright) size.  Anything unreadable is ``None``, never an error."""
    try:
        moov = _read_moov(Path(path))
    except OSError:
        return None, "QuickTime metadata: unreadable"
    if moov is None:
        return None, "QuickTime metadata: none"
    stack = [(8, len(moov))]
    while stack:
        s, e = stack.pop()
        for kind, bs, be in _boxes(moov, s, e):
            if kind == b"meta":
                v = _meta_value(moov, bs, be)
                if v is None and be - bs >= 4:               # an ISO 'meta' is a full box (4 bytes more)
                    v = _meta_value(moov, bs + 4, be)
                if v is not None:
                    return _checked(focal_px_from_35mm(v, image_size), image_size,
                                    f"QuickTime 35 mm equivalent {v:g} mm")
            elif kind in _CONTAINERS or kind == b"trak":
                stack.append((bs, be))
    return None, "QuickTime metadata: no focal length"
