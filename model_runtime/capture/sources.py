"""Frame sources: a video file, an image folder or a live camera, streamed frame by frame.

Every source yields :class:`Frame` objects one at a time; nothing keeps more
than the current frame, so an hour of video never sits in memory.  Open one
with :func:`open_source`::

    with open_source("clip.mp4", start=10, end=200) as src:
        print(src.fps, src.image_size, src.num_frames)
        for frame in src:            # Frame(index, time, image (H, W, 3) uint8 BGR)
            ...

Metadata honoured:

* **Videos** (OpenCV/FFmpeg): fps, frame count and the container's rotation
  (display-matrix) metadata: a phone video recorded upright comes out upright,
  and ``image_size`` is the size *after* rotation.  OpenCV's own auto-rotation
  is switched off and the rotation applied here, so behaviour does not depend
  on the OpenCV build.
* **Image folders**: images in natural sort order (``2.png`` before ``10.png``);
  EXIF orientation is applied by ``cv2.imread``; the frame rate is given by
  the caller (default 30).
* **Cameras** (by index): frames are timed with a monotonic clock.

Bad input raises a :mod:`model_runtime.core.errors` type naming the file, camera
or frame: :class:`InputMissingError` (no such file/camera),
:class:`InputUnreadableError` (not decodable, zero frames, an unreadable image),
:class:`SourceLostError` (a camera disconnects, a video stops decoding early).
"""
from __future__ import annotations

import math
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Iterator

import cv2
import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError, SourceLostError
from . import lens

IMAGE_EXTENSIONS: Final[frozenset[str]] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
DEFAULT_FOLDER_FPS: Final[float] = 30.0
DEFAULT_VIDEO_FPS: Final[float] = 30.0  # used only when a container reports no frame rate
#: consecutive failed camera reads (about 50 ms apart) before the camera counts as lost
CAMERA_MAX_FAILED_READS: Final[int] = 20
#: a video may end this many frames before its container's frame count without an error
#: (container counts are estimates for some formats)
VIDEO_COUNT_TOLERANCE: Final[int] = 2

_ROTATE_CODES: Final[dict[int, int]] = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    index: frame number in the source (absolute: ``--start 10`` yields index 10 first);
    time: seconds since the start of the source (video/folder: ``index / fps``;
    camera: monotonic clock since the camera was opened);
    image: ``(H, W, 3)`` uint8, BGR (OpenCV's layout), already rotated upright.
    """

    index: int
    time: float
    image: np.ndarray


class FrameSource(ABC):
    """A stream of frames.  Use as a context manager or call :meth:`close`.

    Attributes:
        description: how errors name this source, e.g. ``video 'a.mp4'`` or ``camera 0``.
        fps: frames per second (nominal for cameras).
        image_size: ``(width, height)`` of the yielded images in px.
        num_frames: number of frames this source will yield (after ``start``/``end``),
            ``None`` when unknown in advance (cameras without ``end``).
        is_live: True for cameras.
        start: index of the first frame yielded.
        focal_px: the focal length (px of the yielded images) the file's own metadata gives
            (:mod:`.lens`: EXIF, QuickTime), None when it gives none; ``focal_note`` says what was found.
    """

    description: str
    fps: float
    image_size: tuple[int, int]
    num_frames: int | None
    is_live: bool = False
    start: int = 0
    focal_px: float | None = None
    focal_note: str = "no metadata"

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(spec: str | int | Path, start: int = 0, end: int | None = None,
                fps: float | None = None) -> FrameSource:
    """Open a video file, an image folder or a camera (an ``int``, or a string of digits
    that is not an existing path).

    Args:
        spec: the source.
        start: first frame index to yield (>= 0).
        end: stop before this frame index (exclusive); ``None`` = to the end.
        fps: frame rate for image folders (default 30); ignored otherwise.

    Raises:
        ValueError: ``start``/``end`` out of order.
        InputMissingError, InputUnreadableError: see the module docstring.
    """
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"frame range start={start} end={end} is empty or negative")
    if isinstance(spec, bool):  # bool is an int subclass; never a camera
        raise TypeError("source must be a path or a camera index")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit() and not Path(spec).exists()):
        return CameraSource(int(spec), end=end)
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputMissingError(f"{path}: no such file or folder")
    if path.is_dir():
        return ImageFolderSource(path, start=start, end=end, fps=fps or DEFAULT_FOLDER_FPS)
    return VideoSource(path, start=start, end=end)


# --------------------------------------------------------------------------- video
class VideoSource(FrameSource):
    """A video file decoded by OpenCV's FFmpeg backend, rotation metadata applied."""

    def __init__(self, path: Path | str, start: int = 0, end: int | None = None):
        self.path = Path(path)
        self.description = f"video '{self.path}'"
        if not self.path.is_file():
            raise InputMissingError(f"{self.path}: no such file")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise InputUnreadableError(
                f"{self.path}: cannot be opened as a video (unknown container or codec, or a "
                "truncated/corrupt file)")
        self._cap = cap
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        self.rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        if self.rotation not in (0, *_ROTATE_CODES):
            self.rotation = 90 * int(round(self.rotation / 90.0)) % 360
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else DEFAULT_VIDEO_FPS
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.container_frames: int | None = count if count > 0 else None
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w <= 0 or h <= 0 or self.container_frames == 0:
            self.close()
            raise InputUnreadableError(f"{self.path}: the video has no frames")
        self.image_size = (h, w) if self.rotation in (90, 270) else (w, h)
        self.start = int(start)
        if self.container_frames is not None and self.start >= self.container_frames:
            self.close()
            raise InputUnreadableError(
                f"{self.path}: start frame {self.start} is past the last frame "
                f"({self.container_frames} frames)")
        stop = self.container_frames if end is None else (
            min(end, self.container_frames) if self.container_frames is not None else end)
        self._stop = stop
        self.num_frames = None if stop is None else stop - self.start
        # Decode the first frame now so an undecodable stream fails at open time.
        if self.start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, self.start)
        ok, first = cap.read()
        if not ok or first is None:
            self.close()
            where = f"frame {self.start}" if self.start else "its first frame"
            raise InputUnreadableError(
                f"{self.path}: cannot decode {where} (zero decodable frames: unsupported codec or "
                "corrupt file)")
        self._first: np.ndarray | None = first
        self.focal_px, self.focal_note = lens.focal_from_video(self.path, self.image_size)

    def _upright(self, img: np.ndarray) -> np.ndarray:
        code = _ROTATE_CODES.get(self.rotation)
        return img if code is None else cv2.rotate(img, code)

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise RuntimeError(f"{self.description} can be iterated only once")
        img, self._first = self._first, None
        i = self.start
        while True:
            yield Frame(i, i / self.fps, self._upright(img))
            i += 1
            if self._stop is not None and i >= self._stop:
                return
            ok, img = self._cap.read()
            if not ok or img is None:
                break
        expected = self._stop
        if expected is not None and expected - i > VIDEO_COUNT_TOLERANCE:
            raise SourceLostError(
                f"{self.path}: decoding stopped at frame {i} although the file declares "
                f"{self.container_frames} frames (truncated or corrupt file); frames {self.start}.."
                f"{i - 1} were processed")

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None


# --------------------------------------------------------------------------- image folder
def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


class ImageFolderSource(FrameSource):
    """The images of one folder (not recursive), in natural sort order, as frames."""

    def __init__(self, folder: Path | str, start: int = 0, end: int | None = None,
                 fps: float = DEFAULT_FOLDER_FPS):
        self.folder = Path(folder)
        self.description = f"image folder '{self.folder}'"
        if not self.folder.is_dir():
            raise InputMissingError(f"{self.folder}: no such folder")
        files = sorted((p for p in self.folder.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)
        if not files:
            raise InputUnreadableError(
                f"{self.folder}: the folder contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        if start >= len(files):
            raise InputUnreadableError(
                f"{self.folder}: start frame {start} is past the last image ({len(files)} images)")
        self.files = files
        self.start = int(start)
        self._stop = len(files) if end is None else min(end, len(files))
        self.num_frames = self._stop - self.start
        if not (fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        first = self._read(self.start)
        self.image_size = (first.shape[1], first.shape[0])
        self._first: np.ndarray | None = first
        self.focal_px, self.focal_note = lens.focal_from_image(files[self.start], self.image_size)

    def _read(self, i: int) -> np.ndarray:
        f = self.files[i]
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise InputUnreadableError(f"{f}: frame {i} of {self.description} is not a readable image")
        return img

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise RuntimeError(f"{self.description} can be iterated only once")
        img, self._first = self._first, None
        for i in range(self.start, self._stop):
            if i > self.start:
                img = self._read(i)
            if (img.shape[1], img.shape[0]) != self.image_size:
                raise InputUnreadableError(
                    f"{self.files[i]}: frame {i} is {img.shape[1]}x{img.shape[0]} but the first image is "
                    f"{self.image_size[0]}x{self.image_size[1]}; all images of a folder must share one size")
            yield Frame(i, i / self.fps, img)


# --------------------------------------------------------------------------- camera
class CameraSource(FrameSource):
    """A live camera by index (OpenCV).  ``end`` stops after that many frames."""

    is_live = True

    def __init__(self, index: int, end: int | None = None):
        self.index = int(index)
        self.description = f"camera {self.index}"
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise InputMissingError(f"camera {self.index} cannot be opened (not connected, or in use)")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise InputMissingError(f"camera {self.index} opened but delivers no frames")
        self._cap = cap
        self._first: np.ndarray | None = first
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else DEFAULT_VIDEO_FPS
        self.image_size = (first.shape[1], first.shape[0])
        self.num_frames = end
        self._t0 = time.monotonic()

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise RuntimeError(f"{self.description} can be iterated only once")
        img, self._first = self._first, None
        i = 0
        while True:
            yield Frame(i, time.monotonic() - self._t0, img)
            i += 1
            if self.num_frames is not None and i >= self.num_frames:
                return
            img = self._read_retrying(i)

    def _read_retrying(self, i: int) -> np.ndarray:
        for _ in range(CAMERA_MAX_FAILED_READS):
            if self._cap is None:
                break
            ok, img = self._cap.read()
            if ok and img is not None:
                return img
            time.sleep(0.05)
        raise SourceLostError(
            f"camera {self.index} stopped delivering frames at frame {i} (disconnected?); "
            f"frames 0..{i - 1} were processed")

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None
