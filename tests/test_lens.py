"""The focal length from a file's own metadata (capture/lens.py): EXIF of images (written here with
Pillow, read back through the real sources and the real capture), QuickTime metadata of MP4s (a real
OpenCV-written MP4 with an iPhone-style ``moov/meta`` added), and what is ignored."""
from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from model_runtime.capture import lens
from model_runtime.capture.focal import clip_camera
from model_runtime.capture.sources import ImageFolderSource, VideoSource
from model_runtime.core.capture_file import load_capture
from test_sources import write_video

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "samples" / "demo_clip.mp4"


def demo_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(DEMO))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    assert all(f is not None for f in frames)
    return frames


def write_jpeg(path: Path, bgr: np.ndarray, tags: dict[int, object]) -> Path:
    img = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    ifd = exif.get_ifd(lens.EXIF_IFD)
    ifd.update(tags)
    img.save(path, exif=exif)
    return path


def test_35mm_equivalent_goes_through_the_diagonal():
    # a 36 x 24 frame at 36 px/mm: f35 = 50 mm -> 50 * 36 px
    assert lens.focal_px_from_35mm(50.0, (36 * 36, 24 * 36)) == pytest.approx(50.0 * 36)
    assert lens.plausible(1000.0, (1920, 1080)) and not lens.plausible(20000.0, (1920, 1080))


def test_exif_35mm_equivalent_of_a_folder(tmp_path):
    frame = demo_frames(1)[0]
    write_jpeg(tmp_path / "0001.jpg", frame, {lens.FOCAL_35MM: 26})
    src = ImageFolderSource(tmp_path)
    want = 26 / math.hypot(36, 24) * math.hypot(*src.image_size)
    assert src.focal_px == pytest.approx(want) and "35 mm" in src.focal_note
    cam = clip_camera(src.image_size, None, None, estimate=True, metadata_focal=src.focal_px)
    assert cam.source == "metadata" and not cam.pending and cam.K[0, 0] == pytest.approx(want)
    # a given --fov or calibration still wins
    assert clip_camera(src.image_size, 50.0, None, estimate=True, metadata_focal=src.focal_px).source == "fov"


def test_exif_focal_plane_resolution(tmp_path):
    """A camera's FocalLength with FocalPlaneXResolution (pixels per inch on the sensor)."""
    frame = demo_frames(1)[0]                                  # 640 x 480
    # a 6.4 mm wide sensor (100 px/mm = 2540 px/inch) and a 4 mm lens: f = 400 px
    write_jpeg(tmp_path / "a.jpg", frame, {lens.FOCAL_MM: 4.0, lens.PLANE_X_RES: 2540.0, lens.PLANE_UNIT: 2,
                                           lens.EXIF_WIDTH: 640})
    f, note = lens.focal_from_image(tmp_path / "a.jpg", (640, 480))
    assert f == pytest.approx(400.0) and "focal plane" in note


def test_exif_copied_into_a_resized_image_is_ignored(tmp_path):
    """As on PIXIE's GettyImages-545880635.jpg in ../shared (a Canon EOS-1Ds Mark II photo resized to
    483 x 724 with the original sensor resolution kept): 63 mm at 3527 px/inch would be a 3 degree
    field of view, so the metadata is not used."""
    frame = cv2.resize(demo_frames(1)[0], (483, 724))
    write_jpeg(tmp_path / "b.jpg", frame, {lens.FOCAL_MM: 63.0, lens.PLANE_X_RES: 3526.76, lens.PLANE_UNIT: 2,
                                           lens.EXIF_WIDTH: 483})
    f, note = lens.focal_from_image(tmp_path / "b.jpg", (483, 724))
    assert f is None and "ignored" in note


def test_no_or_broken_exif_is_none(tmp_path):
    frame = demo_frames(1)[0]
    cv2.imwrite(str(tmp_path / "plain.png"), frame)
    assert lens.focal_from_image(tmp_path / "plain.png", (640, 480))[0] is None
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*garbage")
    assert lens.focal_from_image(tmp_path / "junk.jpg", (640, 480))[0] is None


# ----------------------------------------------------------------------------- QuickTime
def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def quicktime_meta(f35: float) -> bytes:
    """An iPhone-style ``meta`` box: ``hdlr`` (mdta), ``keys`` with the focal key, ``ilst`` float32."""
    hdlr = _box(b"hdlr", bytes(8) + b"mdta" + bytes(12) + b"\x00")
    key = struct.pack(">I4s", 8 + len(lens.QUICKTIME_KEY), b"mdta") + lens.QUICKTIME_KEY
    other = struct.pack(">I4s", 8 + 20, b"mdta") + b"com.apple.quicktime."[:20]
    keys = _box(b"keys", bytes(4) + struct.pack(">I", 2) + other + key)
    data = _box(b"data", struct.pack(">I", 23) + bytes(4) + struct.pack(">f", f35))
    item = struct.pack(">I", 8 + len(data)) + struct.pack(">I", 2) + data        # item of key index 2
    return _box(b"meta", hdlr + keys + _box(b"ilst", item))


def add_to_moov(mp4: Path, extra: bytes) -> None:
    """Append ``extra`` inside the top-level ``moov`` (OpenCV writes it after ``mdat``, so no sample
    offset moves)."""
    b = mp4.read_bytes()
    pos = 0
    while pos < len(b):
        size, kind = struct.unpack(">I4s", b[pos:pos + 8])
        if kind == b"moov":
            assert pos + size == len(b), "moov is not the last box"
            moov = struct.pack(">I4s", size + len(extra), b"moov") + b[pos + 8:pos + size] + extra
            mp4.write_bytes(b[:pos] + moov)
            return
        pos += size
    raise AssertionError("no moov")


def test_quicktime_focal_of_a_video(tmp_path):
    mp4 = write_video(tmp_path / "iphone.mp4", demo_frames(3))
    assert VideoSource(mp4).focal_px is None
    add_to_moov(mp4, _box(b"udta", quicktime_meta(28.0)))
    src = VideoSource(mp4)
    assert src.focal_px == pytest.approx(28.0 / math.hypot(36, 24) * math.hypot(640, 480), rel=1e-6)
    assert len(list(src)) == 3                      # still decodes
    src.close()


def test_broken_quicktime_metadata_is_none(tmp_path):
    mp4 = write_video(tmp_path / "bad.mp4", demo_frames(2))
    meta = bytearray(quicktime_meta(28.0))
    struct.pack_into(">I", meta, len(meta) - 20, 0xFFFFFF)        # an item size past the box
    add_to_moov(mp4, bytes(meta))
    assert lens.focal_from_video(mp4, (640, 480))[0] is None
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x01moov" + bytes(4))
    assert lens.focal_from_video(tmp_path / "junk.mp4", (640, 480))[0] is None


def test_capture_records_the_metadata_focal(tmp_path):
    """The real capture of an image folder whose JPEGs carry a 35 mm equivalent: camera_source
    'metadata' and that focal in camera_K."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(demo_frames(3)):
        write_jpeg(folder / f"{i:04d}.jpg", f, {lens.FOCAL_35MM: 30})
    out = tmp_path / "cap.npz"
    r = subprocess.run([sys.executable, "-m", "model_runtime", "capture", str(folder), "-o", str(out),
                        "--no-face", "--no-feet", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cap = load_capture(out)
    assert str(cap["camera_source"]) == "metadata"
    assert float(cap["camera_K"][0, 0]) == pytest.approx(30 / math.hypot(36, 24) * math.hypot(640, 480), rel=1e-5)
