"""``eval video``: does the captured avatar do what the camera saw?

``python -m model_runtime eval video CAPTURE.npz [--video VIDEO] [--sheet OUT.png] --json``

The capture is posed with its own body model (``X_cam = scale * LBS(betas, pose_6d) + transl``,
:mod:`model_runtime.capture.pipeline`) and measured against the detector's evidence stored in
the same file.  Figures (``None`` where nothing could be measured):

* ``reprojection_px``: the model's 66 keypoints (24 body keypoints of
  :data:`~model_runtime.core.skeleton.BODY_KEYPOINT_NAMES`, then 21 left- and 21 right-hand
  keypoints, the rows of ``keypoints_2d``; :mod:`model_runtime.models.keypoints`) projected with
  ``camera_K``, against the detector's ``keypoints_2d[..., :2]`` where its confidence
  ``keypoints_2d[..., 2] >= 0.5``, valid frames only: median and mean distance (px) over body
  rows (``body_*``) and hand rows (``hands_*``);
* ``foot_slide_mm_per_frame``: mean horizontal displacement (mm per frame) of the two ankle
  joints between consecutive valid frames in which that foot is in contact.  Contact: the file's
  ``foot_contact (T, 2)`` [left, right] when it holds one with any contact (all False = not
  estimated, as the capture writes it until a stage fills it); else the lowest 20 % of that ankle's
  heights above ``ground_plane`` (``(4,)``: ``n . x + d = 0`` in camera space, when present and
  non-zero; height along the normal, oriented so the pelvis is above; horizontal = in the plane);
  else height ``-y`` and horizontal ``(x, z)`` of the camera;
* ``jitter_mm_per_frame2``: mean norm of the second difference of the 52 posed joints (camera
  space, mm) over runs of three consecutive valid frames;
* both the slide and the jitter leave out the frame pairs across a ``track_break`` (another person,
  or a cut: the capture's tracks are separate there);
* ``valid_fraction``: valid frames / frames; ``track_breaks``: frames that start a new track;
* ``visible_fraction``: per part, the fraction of (frame, keypoint) pairs seen (>= 0.5), over all
  frames: of ``keypoint_visibility (T, 66)`` when the file holds it (not the defaults a version-1
  file is loaded with), else of the detector's confidence.  Parts: ``body``
  = the 19 body keypoints that are not on the head, ``left_hand`` / ``right_hand`` = 21 rows each,
  ``face`` = nose, eyes and ears.

Extra keys (:mod:`.video_extra`): ``feet`` (contact fractions, the foot slide by the lowest-20 %
rule whatever the labels, the pelvis depth's range and pumping) and ``hands`` (wrist and hand
orientation against the hand detector, finger curl, open hands, hands at the face).

``--sheet OUT.png`` draws a contact sheet of a few evenly spaced valid frames (layout in
:func:`sheet_layout`): per frame, the video frame with detector points (green) and projected
model points (red) joined by lines, beside the avatar (the merged body + face mesh when the
capture has a face, else the body) rendered from the capture camera and blended over the frame
(:mod:`.render_avatar`).  ``--video`` is read by frame index (capture frame t = video frame t);
when its frame rate, image size or length disagree with the capture, a warning line says so on
stderr (frames are then scaled to the capture's image size so the drawing stays aligned).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Final

import numpy as np

from ..core.capture_file import Capture, load_capture
from ..core.errors import InputMissingError, InputUnreadableError, OutputError, SourceLostError
from ..core.rotations import rot6d_to_matrix
from ..core.safe_npz import npz_members
from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES, JOINT_NAMES
from .common import note, print_result
from .render_avatar import project
from .video_extra import feet_figures, hands_figures

CONFIDENCE: Final[float] = 0.5
CONTACT_QUANTILE: Final[float] = 0.20
SHEET_FRAMES: Final[int] = 6
SHEET_WIDTH: Final[int] = 1600
#: frames per sheet row (each frame takes two panels): landscape / portrait videos
SHEET_FRAMES_PER_ROW: Final[tuple[int, int]] = (2, 3)

NB: Final[int] = len(BODY_KEYPOINT_NAMES)
NH: Final[int] = len(HAND21_NAMES)
FACE_ROWS: Final[np.ndarray] = np.array([BODY_KEYPOINT_NAMES.index(n) for n in
                                         ("nose", "left_eye", "right_eye", "left_ear", "right_ear")])
PART_ROWS: Final[dict[str, np.ndarray]] = {
    "body": np.setdiff1d(np.arange(NB), FACE_ROWS),
    "left_hand": np.arange(NB, NB + NH),
    "right_hand": np.arange(NB + NH, NB + 2 * NH),
    "face": FACE_ROWS,
}
ANKLES: Final[np.ndarray] = np.array([JOINT_NAMES.index("left_ankle"), JOINT_NAMES.index("right_ankle")])
PELVIS: Final[int] = JOINT_NAMES.index("pelvis")


def _int_in(lo: int, hi: int, also: tuple[int, ...] = ()):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not (lo <= v <= hi or v in also):
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}" + (f" or {also[0]}" if also else "")
                                             + f", got {v}")
        return v
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", help="capture .npz to measure")
    p.add_argument("--video", help="the video or image folder the capture was made from (for the contact sheet)")
    p.add_argument("--sheet", help="write a contact sheet (.png) of a few frames")
    p.add_argument("--sheet-frames", type=_int_in(1, 100), default=SHEET_FRAMES, metavar="N",
                   help=f"frames on the sheet (default {SHEET_FRAMES}, evenly spaced valid frames)")
    p.add_argument("--sheet-width", type=_int_in(64, 20000), default=SHEET_WIDTH, metavar="PX",
                   help=f"sheet width in pixels (default {SHEET_WIDTH})")
    p.add_argument("--sheet-colours", type=_int_in(2, 256, also=(0,)), default=0, metavar="N",
                   help="write the sheet as a palette PNG of N colours (2..256; smaller files), 0 = full colour")
    p.add_argument("--body-model", help="body model to pose with (default: the one the capture names)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


# ----------------------------------------------------------------------------- posing
class PosedCapture:
    """A capture posed with its body model: ``joints (T, 52, 3)`` and ``keypoints (T, 66, 3)``
    in camera space (metres), rows of ``keypoints_2d``."""

    def __init__(self, cap: Capture, body_model: str | None = None, chunk: int = 64):
        from ..models.keypoints import body_keypoints, hand_keypoints, keypoint_vertex_ids
        from ..models.load import load_body_model

        self.cap = cap
        self._full = False
        self.body = load_body_model(body_model or str(cap["body_model"]))
        vids = keypoint_vertex_ids(self.body)
        T = cap.num_frames
        self.joints = np.zeros((T, len(JOINT_NAMES), 3))
        self.keypoints = np.zeros((T, NB + 2 * NH, 3))
        for s in range(0, T, chunk):
            verts, joints = self.pose(np.arange(s, min(s + chunk, T)))
            self.joints[s:s + chunk] = joints
            self.keypoints[s:s + chunk] = np.concatenate(
                [body_keypoints(joints, verts, vids), hand_keypoints(joints, verts, vids, "left"),
                 hand_keypoints(joints, verts, vids, "right")], 1)

    def _args(self, frames: np.ndarray):
        cap, n = self.cap, len(frames)
        rot = rot6d_to_matrix(cap["pose_6d"][frames].astype(np.float64))
        betas = np.broadcast_to(cap["betas"].astype(np.float64), (n, cap["betas"].shape[-1]))
        return betas, rot, cap["transl"][frames].astype(np.float64), np.full(n, float(cap["scale"]))

    def pose(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body ``(vertices (n, V, 3), joints (n, 52, 3))`` of ``frames`` in camera space."""
        betas, rot, transl, scale = self._args(frames)
        verts, joints, _ = self.body.forward(betas, rot, transl=transl, scale=scale)
        return verts, joints

    def mesh(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """``(vertices (V, 3), faces (F, 3))`` of one frame: the merged body + face mesh when the
        capture has a face identity and its face model loads, else the body."""
        cap = self.cap
        if cap["face_identity"].size and cap["face_expression"].shape[1]:
            full = self._full_model()
            if full is not None:
                betas, rot, transl, scale = self._args(np.array([frame]))
                verts, _ = full.forward(betas, rot, cap["face_identity"][None].astype(np.float64),
                                        cap["face_expression"][frame:frame + 1].astype(np.float64), transl, scale)
                return verts[0], full.merged_faces
        return self.pose(np.array([frame]))[0][0], self.body.faces

    def _full_model(self):
        if self._full is False:   # not built yet
            from ..core.errors import ModelFileError
            from ..models.full_model import build_full_model
            from ..models.load import load_face_model

            try:
                full = build_full_model(self.body, load_face_model(str(self.cap["face_model"])))
                ok = (full.face.sizes["identity"] == self.cap["face_identity"].size
                      and full.face.sizes["expression"] == self.cap["face_expression"].shape[1])
                self._full = full if ok else None
            except (ModelFileError, OSError, ValueError) as e:
                note(f"note: the face model '{self.cap['face_model']}' does not load ({e}); the sheet shows the body")
                self._full = None
        return self._full


# ----------------------------------------------------------------------------- figures
def reprojection(cap: Capture, model_px: np.ndarray) -> dict:
    """``{body,hands}_{median,mean}`` px over valid frames and confident detector rows."""
    kp = cap["keypoints_2d"].astype(np.float64)
    used = (kp[..., 2] >= CONFIDENCE) & cap["valid"][:, None] & np.isfinite(model_px).all(-1)
    err = np.linalg.norm(model_px - kp[..., :2], axis=-1)
    out = {}
    for part, rows in (("body", slice(0, NB)), ("hands", slice(NB, NB + 2 * NH))):
        e = err[:, rows][used[:, rows]]
        out[f"{part}_median"] = float(np.median(e)) if e.size else None
        out[f"{part}_mean"] = float(e.mean()) if e.size else None
    return out


def _height_and_horizontal(cap: Capture, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Ankle heights ``(T, 2)``, a ``(3, 3)`` projector onto the horizontal, and what defined them."""
    ankles = joints[:, ANKLES]
    plane = np.asarray(cap.data.get("ground_plane", np.zeros(4)), np.float64).reshape(-1)
    if plane.size == 4 and np.linalg.norm(plane[:3]) > 0:
        n, d = plane[:3] / np.linalg.norm(plane[:3]), plane[3] / np.linalg.norm(plane[:3])
        valid = cap["valid"]
        if valid.any() and np.median(joints[valid, PELVIS] @ n + d) < 0:
            n, d = -n, -d
        return ankles @ n + d, np.eye(3) - np.outer(n, n), "ground_plane"
    return -ankles[..., 1], np.diag([1.0, 0.0, 1.0]), "camera -y"


def in_file(cap: Capture, key: str) -> bool:
    """Whether the capture's file itself holds ``key`` (not a default filled in on loading)."""
    return key in cap.data and key in npz_members(cap.path)


def foot_contact(cap: Capture, joints: np.ndarray, labels: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """``(contact (T, 2) bool, horizontal projector (3, 3), source)``: the file's ``foot_contact``
    (when ``labels``) or the lowest :data:`CONTACT_QUANTILE` of each ankle's valid heights."""
    height, horizontal, source = _height_and_horizontal(cap, joints)
    valid = cap["valid"].astype(bool)
    if labels and in_file(cap, "foot_contact") and np.asarray(cap["foot_contact"], bool).any():
        return np.asarray(cap["foot_contact"], bool) & valid[:, None], horizontal, "foot_contact labels"
    contact = np.zeros(height.shape, bool)
    if valid.any():
        thresh = np.quantile(height[valid], CONTACT_QUANTILE, axis=0)
        contact = (height <= thresh) & valid[:, None]
    return contact, horizontal, f"lowest {CONTACT_QUANTILE:.0%} of ankle height ({source})"


def foot_slide(cap: Capture, joints: np.ndarray, labels: bool = True) -> tuple[float | None, str]:
    """Mean horizontal ankle displacement (mm/frame) over consecutive frames both in contact."""
    contact, horizontal, source = foot_contact(cap, joints, labels)
    step = np.diff(joints[:, ANKLES], axis=0) @ horizontal.T              # (T-1, 2, 3)
    both = contact[1:] & contact[:-1] & ~_breaks(cap)[1:, None]            # not from one person to another
    speeds = np.linalg.norm(step, axis=-1)[both]
    return (float(speeds.mean() * 1000) if speeds.size else None), source


def _breaks(cap: Capture) -> np.ndarray:
    """``(T,)`` bool: the frames that start a new track (``track_break``; absent: none)."""
    tb = cap.data.get("track_break")
    return np.zeros(len(cap["valid"]), bool) if tb is None else np.asarray(tb, bool)


def jitter(joints: np.ndarray, valid: np.ndarray, breaks: np.ndarray | None = None) -> float | None:
    """Mean ``|x[t+1] - 2 x[t] + x[t-1]|`` (mm/frame^2) of all joints where the three frames are valid
    (and, given ``breaks (T,)``, none of the last two starts a new track)."""
    if len(joints) < 3:
        return None
    acc = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    ok = valid[2:] & valid[1:-1] & valid[:-2]
    if breaks is not None:
        ok &= ~(breaks[2:] | breaks[1:-1])
    return float(np.linalg.norm(acc[ok], axis=-1).mean() * 1000) if ok.any() else None


def visibility(cap: Capture) -> dict:
    """Fraction of (frame, keypoint) pairs seen (visibility or confidence >= 0.5) per part, over all frames."""
    score = cap["keypoint_visibility"] if in_file(cap, "keypoint_visibility") else cap["keypoints_2d"][..., 2]
    seen = np.asarray(score, np.float64) >= CONFIDENCE
    return {part: (float(seen[:, rows].mean()) if seen.size else None) for part, rows in PART_ROWS.items()}


def evaluate(cap: Capture, posed: PosedCapture) -> tuple[dict, str]:
    """The figures of the module docstring, and a line saying where foot contact came from."""
    K = cap["camera_K"].astype(np.float64)
    valid, breaks = cap["valid"].astype(bool), _breaks(cap)
    slide, contact_source = foot_slide(cap, posed.joints)
    px = project(posed.keypoints, K)
    return {
        "reprojection_px": reprojection(cap, px),
        "foot_slide_mm_per_frame": slide,
        "jitter_mm_per_frame2": jitter(posed.joints, valid, breaks),
        "track_breaks": int(breaks.sum()),
        "valid_fraction": float(valid.mean()) if len(valid) else 0.0,
        "visible_fraction": visibility(cap),
        "feet": feet_figures(cap, posed.joints, foot_slide(cap, posed.joints, labels=False)[0]),
        "hands": hands_figures(cap, posed.keypoints, px),
    }, contact_source


# ----------------------------------------------------------------------------- contact sheet
def sheet_frames(valid: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` evenly spaced valid frame indices (first and last valid included)."""
    idx = np.nonzero(valid)[0]
    if len(idx) <= n:
        return idx
    return idx[np.unique(np.round(np.linspace(0, len(idx) - 1, n)).astype(int))]


def sheet_layout(image_size: tuple[int, int], n_frames: int, width: int = SHEET_WIDTH) -> tuple[int, int, int, int]:
    """``(panel_w, panel_h, cols, rows)``: every frame is two panels side by side (of the image's
    aspect), :data:`SHEET_FRAMES_PER_ROW` frames a row (more for a portrait video); the sheet is
    ``(rows * panel_h, cols * panel_w)``."""
    per_row = SHEET_FRAMES_PER_ROW[int(image_size[1] > image_size[0])]
    cols = 2 * min(per_row, max(n_frames, 1))
    panel_w = max(width // (2 * per_row), 16)
    panel_h = max(int(round(panel_w * image_size[1] / image_size[0])), 16)
    return panel_w, panel_h, cols, max(math.ceil(n_frames / per_row), 1)


class VideoFrames:
    """Frames of ``path`` (a video or an image folder, read as ``capture`` reads it:
    :func:`model_runtime.capture.sources.open_source`, rotation metadata applied) by index, scaled to
    the capture's image size; warns (stderr) when the frame rate, size or length disagree with the
    capture."""

    def __init__(self, path: str | Path, cap: Capture):
        from ..capture.sources import open_source

        self.path = Path(path)
        if not self.path.exists():
            raise InputMissingError(f"{self.path}: video file or image folder not found")
        self.source = open_source(self.path)           # InputUnreadableError names the file
        self.size = tuple(int(v) for v in cap["image_size"])
        fps = float(np.asarray(cap["fps"]).reshape(-1)[0])
        v_fps, v_size, v_frames = self.source.fps, tuple(self.source.image_size), self.source.num_frames
        self.warnings = []
        if self.path.is_file() and abs(v_fps - fps) > 1e-3 * fps:
            self.warnings.append(f"the video runs at {v_fps:.3f} fps, the capture at {fps:.3f} fps: "
                                 "frames are matched by index, so the timing may not agree")
        if v_size != self.size:
            self.warnings.append(f"the video is {v_size[0]}x{v_size[1]}, the capture's camera "
                                 f"{self.size[0]}x{self.size[1]}: frames are scaled to the capture's size")
        if v_frames is not None and 0 < v_frames < cap.num_frames:
            self.warnings.append(f"the video has {v_frames} frames, the capture {cap.num_frames}")
        for w in self.warnings:
            note(f"warning: {self.path.name}: {w}")

    def read(self, indices: np.ndarray) -> dict[int, np.ndarray]:
        """``{index: BGR (H, W, 3)}`` for ``indices``, decoded in order (streamed); missing ones left out."""
        import cv2

        want = {int(i) for i in indices}
        out = {}
        last = max(want, default=-1)
        try:
            for frame in self.source:
                i = frame.index - self.source.start
                if i in want:
                    img = frame.image
                    if (img.shape[1], img.shape[0]) != self.size:
                        img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
                    out[i] = img
                if i >= last:
                    break
        except SourceLostError as e:                    # a truncated video: the frames before it
            note(f"warning: {e}")
        finally:
            self.source.close()
        return out


def crop_box(points: np.ndarray, image_size: tuple[int, int], margin: float = 0.15,
             min_fraction: float = 0.25) -> tuple[float, float, float]:
    """``(x0, y0, s)``: a window of the image's aspect, ``s`` times its size (``s <= 1``), holding
    the finite ``points (N, 2)`` px with ``margin`` around them, kept inside the image; the whole
    image when there are no points."""
    W, H = image_size
    p = points[np.isfinite(points).all(1)]
    if not len(p):
        return 0.0, 0.0, 1.0
    lo, hi = p.min(0), p.max(0)
    span = (hi - lo) * (1 + 2 * margin)
    s = float(np.clip(max(span[0] / W, span[1] / H), min_fraction, 1.0))
    c = (lo + hi) / 2
    x0 = float(np.clip(c[0] - s * W / 2, 0, W * (1 - s)))
    y0 = float(np.clip(c[1] - s * H / 2, 0, H * (1 - s)))
    return x0, y0, s


def write_sheet(path: str | Path, posed: PosedCapture, video: str | Path | None, n_frames: int = SHEET_FRAMES,
                width: int = SHEET_WIDTH, colours: int = 0) -> tuple[int, int]:
    """Draw the contact sheet into ``path`` (PNG; ``colours`` > 0: a palette PNG of that many
    colours); returns its ``(height, width)``.

    Each panel shows a window of the frame around the person (detector and model points, with a
    margin; the whole frame when the person fills it), scaled to the panel."""
    import cv2

    from . import render_avatar as R

    cap = posed.cap
    out = Path(path)
    if not out.parent.is_dir():
        raise OutputError(f"{out}: the folder {out.parent} does not exist")
    size = tuple(int(v) for v in cap["image_size"])
    frames = sheet_frames(cap["valid"].astype(bool), n_frames)
    pw, ph, cols, rows = sheet_layout(size, len(frames), width)
    images = VideoFrames(video, cap).read(frames) if video else {}
    if not video:
        note("note: no --video: the sheet is drawn on a grey background")
    sheet = np.full((rows * ph, cols * pw, 3), 32, np.uint8)
    K = cap["camera_K"].astype(np.float64)
    kp2d = cap["keypoints_2d"].astype(np.float64)
    for n, t in enumerate(frames):
        t = int(t)
        used = kp2d[t, :, 2] >= CONFIDENCE
        model = project(posed.keypoints[t], K)
        x0, y0, s = crop_box(np.concatenate([kp2d[t, used, :2], model]), size)
        A = np.array([[pw / (s * size[0]), 0, -x0 * pw / (s * size[0])],
                      [0, ph / (s * size[1]), -y0 * ph / (s * size[1])]])   # image px -> panel px
        frame = images.get(t)
        if frame is None:
            frame = np.full((ph, pw, 3), 96, np.uint8)
        else:   # OpenCV indexes pixel centres: shift the continuous-pixel map by half a pixel
            A_idx = A.copy()
            A_idx[:, 2] += A[:, :2] @ [0.5, 0.5] - 0.5
            frame = cv2.warpAffine(frame, A_idx, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        to_panel = lambda px: px @ A[:, :2].T + A[:, 2]  # noqa: E731
        left = R.draw_keypoints(frame, to_panel(kp2d[t, :, :2]), to_panel(model), used)
        layer, mask = R.render_mesh(*posed.mesh(t), np.vstack([A, [0, 0, 1]]) @ K, pw, ph)
        right = R.overlay(frame, layer, mask)
        zoom = f" x{1 / s:.1f}" if s < 1 else ""
        R.label(left, f"{t}{zoom} green: detector, red: model")
        R.label(right, f"{t} avatar")
        r, c = divmod(n, cols // 2)
        sheet[r * ph:(r + 1) * ph, 2 * c * pw:(2 * c + 1) * pw] = left
        sheet[r * ph:(r + 1) * ph, (2 * c + 1) * pw:(2 * c + 2) * pw] = right
    try:
        if colours:
            from PIL import Image   # pillow comes with mediapipe (requirements/constraints.txt)

            rgb = Image.fromarray(np.ascontiguousarray(sheet[..., ::-1]))
            rgb.quantize(colors=colours, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
        elif not cv2.imwrite(str(out), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise OSError("OpenCV could not encode it")
    except (OSError, ValueError) as e:
        raise OutputError(f"{out}: cannot write the contact sheet ({e})") from None
    return sheet.shape[:2]


def run(args) -> int:
    cap = load_capture(args.capture)
    posed = PosedCapture(cap, args.body_model)
    result, contact_source = evaluate(cap, posed)
    note(f"foot contact: {contact_source}")
    if args.sheet:
        h, w = write_sheet(args.sheet, posed, args.video, args.sheet_frames, args.sheet_width, args.sheet_colours)
        note(f"wrote {args.sheet} ({w}x{h})")
    print_result(result, args.json)
    return 0
