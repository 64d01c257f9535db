"""The capture's camera in Blender, with the footage behind it.

A capture's avatar lives in Blender's world through :data:`axes.CAMERA_TO_BLENDER` (the capture
camera at the origin, looking along Blender +Y).  :func:`setup_capture_camera` creates (or
updates) the camera object that matches the capture's pinhole ``camera_K`` and ``image_size``:

* it sits at the origin, looking along camera +z (Blender cameras look along their local -Z with
  local +Y up, so its rotation is ``CAMERA_TO_BLENDER @ diag(1, -1, -1)``);
* :func:`lens_settings`: horizontal sensor fit, ``lens = fx * sensor_width / W``, shifts from the
  principal point (in units of the image width, Blender's convention for a horizontal fit), the
  scene's render resolution = ``image_size`` and, when ``fx != fy``, a pixel aspect that gives
  the vertical focal length;
* the footage (a video file) is the camera's background as a movie clip whose
  ``frame_start`` is the scene frame of capture frame 0 (the importer's ``frame_start``), so the
  animator looking through the camera sees the avatar over the video, frame for frame.

So a point ``X`` of the capture's camera space lands on the same pixel through Blender's camera
(``bpy_extras.object_utils.world_to_camera_view``) as through ``camera_K``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import bpy
import numpy as np
from mathutils import Matrix

from .axes import CAMERA_TO_BLENDER

SENSOR_WIDTH_MM: Final[float] = 36.0
#: custom property that marks the camera object made for captures (updated, not duplicated)
CAMERA_TAG: Final[str] = "fullbody_capture_camera"
CAMERA_NAME: Final[str] = "Capture Camera"
#: the camera object's property naming where the capture's focal length came from (``camera_source``)
CAMERA_SOURCE_PROP: Final[str] = "fullbody_camera_source"
#: the Blender camera's local axes (x right, y up, z backwards) in capture-camera axes (x right, y down, z forward)
_BLENDER_CAMERA_IN_CAPTURE: Final[np.ndarray] = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class LensSettings:
    """Blender camera and render settings equivalent to a pinhole ``K`` for ``resolution (W, H)``."""

    lens_mm: float
    sensor_width_mm: float
    shift_x: float
    shift_y: float
    resolution: tuple[int, int]
    pixel_aspect: tuple[float, float]


def lens_settings(K: np.ndarray, image_size, sensor_width_mm: float = SENSOR_WIDTH_MM) -> LensSettings:
    """Blender's camera model (horizontal sensor fit, ``viewfac = W``, ``ycor = aspect_y / aspect_x``):
    ``fx = lens * W / sensor``, ``fy = fx / ycor``, ``cx = W/2 - shift_x W``,
    ``cy = H/2 + shift_y W / ycor`` (pixels from the top-left corner).  Skew is not representable
    (a non-zero ``K[0, 1]`` raises ValueError)."""
    K = np.asarray(K, np.float64)
    W, H = (int(v) for v in np.asarray(image_size).reshape(-1)[:2])
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (fx > 0 and fy > 0 and W > 0 and H > 0):
        raise ValueError(f"camera_K {K.tolist()} / image size {W}x{H} is not a camera")
    if abs(K[0, 1]) > 1e-6 * fx:
        raise ValueError(f"camera_K has skew {K[0, 1]}; Blender's camera has none")
    # Blender keeps both pixel aspects >= 1: stretch whichever axis has the longer focal length
    aspect = (fy / fx, 1.0) if fy >= fx else (1.0, fx / fy)
    ycor = aspect[1] / aspect[0]                      # = fx / fy
    return LensSettings(lens_mm=float(fx * sensor_width_mm / W), sensor_width_mm=float(sensor_width_mm),
                        shift_x=float((W / 2 - cx) / W), shift_y=float((cy - H / 2) * ycor / W),
                        resolution=(W, H), pixel_aspect=(float(aspect[0]), float(aspect[1])))


def camera_world_matrix() -> Matrix:
    """The camera object's world matrix: at the origin, looking along capture-camera +z."""
    R = np.asarray(CAMERA_TO_BLENDER) @ _BLENDER_CAMERA_IN_CAPTURE
    M = np.eye(4)
    M[:3, :3] = R
    return Matrix(M.tolist())


def _find_camera(scene):
    for ob in scene.objects:
        if ob.type == "CAMERA" and ob.get(CAMERA_TAG):
            return ob
    return None


def load_footage(path: str | Path):
    """The movie clip of ``path`` (reused when already loaded); ValueError naming the file if
    it is missing or Blender cannot read it."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"footage '{p}' does not exist")
    try:
        return bpy.data.movieclips.load(str(p), check_existing=True)
    except RuntimeError as e:
        raise ValueError(f"footage '{p}' cannot be read by Blender ({e})") from None


def setup_capture_camera(scene, capture, footage: str | Path | None = None, frame_start: int = 1,
                         source_start: int = 0):
    """Create or update the capture camera of ``scene`` for ``capture`` (its ``camera_K`` and
    ``image_size``), make it the scene camera and set the render resolution.  ``footage``: a video
    shown as the camera's background; scene frame ``frame_start`` shows its frame ``source_start``
    (the first captured frame).  Everything that can fail (the footage) is checked before the
    scene changes.  Returns the camera object."""
    lens = lens_settings(capture["camera_K"], capture["image_size"])
    clip = load_footage(footage) if footage else None
    cam = _find_camera(scene)
    if cam is None:
        cam = bpy.data.objects.new(CAMERA_NAME, bpy.data.cameras.new(CAMERA_NAME))
        cam[CAMERA_TAG] = True
        scene.collection.objects.link(cam)
    cam.matrix_world = camera_world_matrix()
    cam[CAMERA_SOURCE_PROP] = str(capture["camera_source"])
    data = cam.data
    data.type = "PERSP"
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = lens.sensor_width_mm
    data.lens_unit = "MILLIMETERS"
    data.lens = lens.lens_mm
    data.shift_x, data.shift_y = lens.shift_x, lens.shift_y
    data.clip_start, data.clip_end = 0.05, 500.0
    r = scene.render
    r.resolution_x, r.resolution_y = lens.resolution
    r.resolution_percentage = 100
    r.pixel_aspect_x, r.pixel_aspect_y = lens.pixel_aspect
    scene.camera = cam
    if clip is not None:
        clip.frame_start = int(frame_start)
        clip.frame_offset = int(source_start)
        data.background_images.clear()
        bg = data.background_images.new()
        bg.source = "MOVIE_CLIP"
        bg.clip = clip
        bg.use_camera_clip = False
        bg.frame_method = "STRETCH"
        bg.display_depth = "BACK"
        bg.alpha = 1.0
        data.show_background_images = True
    _look_through(cam)
    return cam


def _look_through(cam) -> None:
    """Put every 3D viewport of the current screen into the camera view (nothing without a UI)."""
    screen = getattr(bpy.context, "screen", None)
    for area in (screen.areas if screen is not None else ()):
        if area.type == "VIEW_3D":
            space = area.spaces.active
            space.camera = cam
            space.region_3d.view_perspective = "CAMERA"
