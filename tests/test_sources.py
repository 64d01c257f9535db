"""Frame sources on real and deliberately broken inputs (real OpenCV/FFmpeg decoding)."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_runtime.core.errors import (
    EXIT_INPUT_MISSING, EXIT_INPUT_UNREADABLE, InputMissingError, InputUnreadableError, SourceLostError,
)
from model_runtime.capture.sources import CameraSource, ImageFolderSource, VideoSource, open_source

TENNIS = "GVHMR/docs/example_video/tennis.mp4"   # 812x720, 29.83 fps, 312 frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def half_white(h: int = 32, w: int = 64) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = 255      # left half white
    return img


def set_mp4_rotation(src: Path, dst: Path, degrees: int) -> Path:
    """Copy an mp4 with its video track's display matrix set to a clockwise rotation."""
    b = bytearray(src.read_bytes())
    i = b.find(b"tkhd")
    assert i > 0
    version = b[i + 4]
    # tkhd: version/flags, times, track id, reserved, duration, reserved(8), layer, group, volume, reserved
    off = i + 4 + 4 + (8 if version == 0 else 16) + 4 + 4 + (4 if version == 0 else 8) + 8 + 8
    one = 0x10000
    cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    struct.pack_into(">9i", b, off, cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(b))
    return dst


# --------------------------------------------------------------------------- real video
def test_real_video_metadata_range_and_streaming(realdata):
    path = realdata / TENNIS
    with open_source(path, start=100, end=110) as src:
        assert isinstance(src, VideoSource)
        assert src.image_size == (812, 720)
        assert src.fps == pytest.approx(29.83, abs=0.01)
        assert src.container_frames == 312 and src.num_frames == 10
        frames = list(src)
    assert [f.index for f in frames] == list(range(100, 110))
    assert frames[0].time == pytest.approx(100 / src.fps)
    assert frames[0].image.shape == (720, 812, 3) and frames[0].image.dtype == np.uint8
    # the seek lands on the same frame as decoding from the start
    cap = cv2.VideoCapture(str(path))
    for _ in range(100):
        cap.grab()
    ok, ref = cap.read()
    cap.release()
    assert ok and np.abs(ref.astype(int) - frames[0].image.astype(int)).mean() < 2.0


def test_end_past_last_frame_is_clipped(realdata):
    with open_source(realdata / TENNIS, start=305, end=1000) as src:
        assert src.num_frames == 7
        assert [f.index for f in src] == list(range(305, 312))


def test_start_past_end_names_file(realdata):
    with pytest.raises(InputUnreadableError, match=r"tennis\.mp4.*start frame 400.*312 frames"):
        open_source(realdata / TENNIS, start=400)


# --------------------------------------------------------------------------- rotation metadata
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, degrees):
    plain = write_video(tmp_path / "plain.mp4", [half_white()] * 3)
    rotated = set_mp4_rotation(plain, tmp_path / f"rot{degrees}.mp4", degrees)
    with open_source(rotated) as src:
        assert src.rotation == degrees
        frame = next(iter(src)).image
    expected = cv2.rotate(half_white(), {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
                                         270: cv2.ROTATE_90_COUNTERCLOCKWISE}[degrees])
    assert src.image_size == (expected.shape[1], expected.shape[0])
    assert frame.shape == expected.shape
    assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 8   # lossy codec


# --------------------------------------------------------------------------- image folders
def test_image_folder_natural_order_and_fps(tmp_path):
    for i in (10, 2, 1):
        img = np.full((20, 30, 3), i * 10, np.uint8)
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), img)
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(tmp_path, fps=12.0) as src:
        assert isinstance(src, ImageFolderSource)
        assert src.image_size == (30, 20) and src.num_frames == 3
        frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 100]
    assert frames[2].time == pytest.approx(2 / 12.0)


def test_image_folder_bad_image_names_file_and_frame(tmp_path):
    cv2.imwrite(str(tmp_path / "a1.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a2.png").write_bytes(b"\x89PNG garbage")
    src = open_source(tmp_path)
    it = iter(src)
    next(it)
    with pytest.raises(InputUnreadableError, match=r"a2\.png: frame 1 .*not a readable image"):
        next(it)


def test_image_folder_mixed_sizes_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "2.png"), np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(InputUnreadableError, match=r"2\.png: frame 1 is 8x9"):
        list(open_source(tmp_path))


# --------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path):
    with pytest.raises(InputMissingError, match="nope.mp4: no such file") as e:
        open_source(tmp_path / "nope.mp4")
    assert e.value.exit_code == EXIT_INPUT_MISSING


def test_empty_folder(tmp_path):
    with pytest.raises(InputUnreadableError, match="contains no images") as e:
        open_source(tmp_path)
    assert e.value.exit_code == EXIT_INPUT_UNREADABLE


def test_random_bytes_file(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(InputUnreadableError, match="random.mp4"):
        open_source(bad)


def test_truncated_mp4(tmp_path):
    good = write_video(tmp_path / "good.mp4", [half_white()] * 20)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputUnreadableError, match="cut.mp4"):
        open_source(cut)


def test_zero_frame_video(tmp_path):
    empty = tmp_path / "empty.mp4"
    vw = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 32))
    vw.release()
    with pytest.raises((InputUnreadableError,), match="empty.mp4"):
        open_source(empty)


def test_video_that_stops_decoding_early(tmp_path):
    """A stream cut inside its data (index intact) raises SourceLostError after the good frames."""
    frames = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(40)]
    avi = tmp_path / "good.avi"
    vw = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for f in frames:
        vw.write(f)
    vw.release()
    data = bytearray(avi.read_bytes())
    # corrupt the second half of the movie data (keep the header and the index at the end)
    movi = data.find(b"movi")
    idx1 = data.rfind(b"idx1")
    mid = movi + (idx1 - movi) // 2
    data[mid:idx1] = bytes(idx1 - mid)
    bad = tmp_path / "half.avi"
    bad.write_bytes(bytes(data))
    got = []
    with pytest.raises(SourceLostError, match=r"half\.avi: decoding stopped at frame \d+"):
        with open_source(bad) as src:
            for f in src:
                got.append(f.index)
    assert 0 < len(got) < 40


def test_camera_that_cannot_be_opened():
    with pytest.raises(InputMissingError, match="camera 99 cannot be opened") as e:
        open_source(99)
    assert e.value.exit_code == EXIT_INPUT_MISSING
    with pytest.raises(InputMissingError, match="camera 98"):
        CameraSource(98)


def test_bad_range():
    with pytest.raises(ValueError, match="empty"):
        open_source("x.mp4", start=5, end=5)
