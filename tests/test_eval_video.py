"""``eval video`` (issue 10, point 5) on a real capture of ``samples/demo_clip.mp4``, and the
capture camera in Blender.

* the real CLI runs and prints exactly the documented figures, all finite; the contact sheet is
  written with the documented size and shows the avatar;
* the same capture with ``keypoints_2d`` replaced by the projected model keypoints (real data,
  modified) has reprojection 0, and a known pixel offset comes back as that offset;
* a capture moved at a known constant speed has that foot slide (contact from labels, from a
  ground plane, from camera -y) and zero jitter;
* Blender: importing with the footage gives a camera through which a posed vertex lands on the
  same pixel as through ``camera_K`` (within 1 px), the footage as its background clip starting
  at the scene's first frame.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_runtime.core import rotations
from model_runtime.core.capture_file import load_capture
from model_runtime.evals import video
from model_runtime.models.keypoints import body_keypoints, hand_keypoints, keypoint_vertex_ids
from model_runtime.models.load import load_body_model

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "demo_clip.mp4"
EXTRA = {"feet", "hands", "track_breaks"}
FIGURES = {"reprojection_px", "foot_slide_mm_per_frame", "jitter_mm_per_frame2", "valid_fraction",
           "visible_fraction"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model_runtime", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def demo_capture(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval_video") / "demo.npz"
    r = cli("capture", str(CLIP), "-o", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    return out


def modified(src: Path, dst: Path, **changes) -> Path:
    """``src``'s arrays with ``changes`` (new or replaced keys), written to ``dst``."""
    with np.load(src) as z:
        data = {k: z[k] for k in z.files}
    data.update(changes)
    np.savez(dst, **data)
    return dst


def model_pixels(cap) -> np.ndarray:
    """The posed model's 66 keypoints through ``camera_K``, computed here from the model layer."""
    body = load_body_model()
    T = cap.num_frames
    rot = rotations.rot6d_to_matrix(cap["pose_6d"].astype(np.float64))
    verts, joints, _ = body.forward(np.repeat(cap["betas"][None].astype(np.float64), T, 0), rot,
                                    transl=cap["transl"].astype(np.float64), scale=np.full(T, float(cap["scale"])))
    ids = keypoint_vertex_ids(body)
    kp = np.concatenate([body_keypoints(joints, verts, ids), hand_keypoints(joints, verts, ids, "left"),
                         hand_keypoints(joints, verts, ids, "right")], 1)
    K = cap["camera_K"].astype(np.float64)
    return np.stack([K[0, 0] * kp[..., 0] / kp[..., 2] + K[0, 2], K[1, 1] * kp[..., 1] / kp[..., 2] + K[1, 2]], -1)


def figures(path: Path) -> dict:
    cap = load_capture(path)
    return video.evaluate(cap, video.PosedCapture(cap))[0]


def test_cli_figures_and_sheet(demo_capture, tmp_path):
    sheet = tmp_path / "sheet.png"
    r = cli("eval", "video", str(demo_capture), "--video", str(CLIP), "--sheet", str(sheet), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res) == FIGURES | EXTRA      # the required figures, and the extra feet/hands groups
    assert set(res["feet"]) == {"contact_fraction", "slide_lowest20_mm_per_frame", "root_depth_range_m",
                                "root_depth_accel_mm_per_frame2", "ground_plane"}
    assert {"wrist_body_vs_hand_px", "direction_deg", "palm_normal_deg", "curl_diff_deg", "open_kept",
            "at_face_kept"} <= set(res["hands"])
    assert set(res["reprojection_px"]) == {"body_median", "body_mean", "hands_median", "hands_mean"}
    assert set(res["visible_fraction"]) == {"body", "left_hand", "right_hand", "face"}
    flat = [*res["reprojection_px"].values(), *res["visible_fraction"].values(), res["foot_slide_mm_per_frame"],
            res["jitter_mm_per_frame2"], res["valid_fraction"]]
    assert all(isinstance(v, float) and np.isfinite(v) for v in flat), res
    assert res["valid_fraction"] == 1.0 and res["visible_fraction"]["body"] > 0.9
    # the avatar stands on the person: its keypoints a few pixels from the detector's
    assert res["reprojection_px"]["body_median"] < 20
    assert "warning" not in r.stderr   # the clip's fps and size agree with the capture
    img = cv2.imread(str(sheet))
    # 6 frames, 2 a row, each two 400x300 panels (640x480 scaled to a 1600 px wide sheet)
    assert img.shape == (900, 1600, 3)
    assert video.sheet_layout((640, 480), 6) == (400, 300, 4, 3)
    # the grey clip has no pink: the avatar panels (columns 2 and 4) do
    avatar = np.concatenate([img[:, 400:800], img[:, 1200:1600]], 1).astype(int)
    frame = np.concatenate([img[:, 0:400], img[:, 800:1200]], 1).astype(int)
    pink = lambda a: int(((a[..., 0] - a[..., 1] > 40) & (a[..., 2] - a[..., 1] > 40)).sum())  # noqa: E731
    assert pink(avatar) > 3000 and pink(frame) == 0


def test_palette_sheet(demo_capture, tmp_path):
    """``--sheet-colours``: a palette PNG (what docs/img holds), same size, smaller than full colour."""
    from PIL import Image

    full, pal = tmp_path / "full.png", tmp_path / "pal.png"
    cap = load_capture(demo_capture)
    posed = video.PosedCapture(cap)
    assert video.write_sheet(full, posed, CLIP, width=800) == (450, 800)
    assert video.write_sheet(pal, posed, CLIP, width=800, colours=64) == (450, 800)
    with Image.open(pal) as im:
        assert im.mode == "P" and im.size == (800, 450) and len(im.getcolors(256)) <= 64
    assert pal.stat().st_size < full.stat().st_size


def test_mismatched_video_is_named(demo_capture, tmp_path):
    """A video whose size and rate differ from the capture's: the sheet is drawn and stderr says so."""
    other = tmp_path / "half.avi"
    src = cv2.VideoCapture(str(CLIP))
    w = cv2.VideoWriter(str(other), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (320, 240))
    for _ in range(20):
        ok, img = src.read()
        w.write(cv2.resize(img, (320, 240)))
    w.release()
    r = cli("eval", "video", str(demo_capture), "--video", str(other), "--sheet", str(tmp_path / "s.png"), "--json")
    assert r.returncode == 0, r.stderr
    assert "320x240" in r.stderr and "15.000 fps" in r.stderr and "20 frames" in r.stderr, r.stderr
    assert cv2.imread(str(tmp_path / "s.png")).shape == (900, 1600, 3)


def test_sheet_from_an_image_folder(demo_capture, tmp_path):
    """``--video`` may be the image folder a capture was made from (read as ``capture`` reads it): the
    clip's frames as lossless PNGs give the very sheet the video gives, without a warning."""
    folder = tmp_path / "frames"
    folder.mkdir()
    src = cv2.VideoCapture(str(CLIP))
    i = 0
    while True:
        ok, img = src.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        i += 1
    from_video, from_folder = tmp_path / "v.png", tmp_path / "f.png"
    r = cli("eval", "video", str(demo_capture), "--video", str(CLIP), "--sheet", str(from_video), "--json")
    assert r.returncode == 0, r.stderr
    r = cli("eval", "video", str(demo_capture), "--video", str(folder), "--sheet", str(from_folder), "--json")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    np.testing.assert_array_equal(cv2.imread(str(from_folder)), cv2.imread(str(from_video)))
    r = cli("eval", "video", str(demo_capture), "--video", str(tmp_path / "nothing"), "--sheet", str(tmp_path / "n.png"))
    assert r.returncode != 0 and "nothing" in r.stderr and r.stderr.count("\n") <= 2, r.stderr


def test_reprojection_is_zero_on_projected_keypoints(demo_capture, tmp_path):
    cap = load_capture(demo_capture)
    kp = cap["keypoints_2d"].copy()
    kp[..., :2] = model_pixels(cap)
    exact = figures(modified(demo_capture, tmp_path / "exact.npz", keypoints_2d=kp))["reprojection_px"]
    assert max(exact.values()) < 1e-3, exact
    kp[:, :video.NB, 0] += 3.0     # every body keypoint 3 px to the right
    kp[:, video.NB:, 1] -= 4.0     # every hand keypoint 4 px up
    off = figures(modified(demo_capture, tmp_path / "off.npz", keypoints_2d=kp))["reprojection_px"]
    for k, want in (("body_median", 3.0), ("body_mean", 3.0), ("hands_median", 4.0), ("hands_mean", 4.0)):
        assert off[k] == pytest.approx(want, abs=1e-3), off


def test_foot_slide_and_jitter_of_a_known_motion(demo_capture, tmp_path):
    """One pose carried at a constant velocity: jitter 0, foot slide = the horizontal speed."""
    cap = load_capture(demo_capture)
    T = cap.num_frames
    pose = np.repeat(cap["pose_6d"][:1], T, 0)
    v = np.array([0.004, 0.0, 0.01])       # m per frame along camera x and z
    transl = (cap["transl"][0] + np.arange(T)[:, None] * v).astype(np.float32)
    base = dict(pose_6d=pose, transl=transl)
    res = figures(modified(demo_capture, tmp_path / "a.npz", **base))    # contact from camera -y
    assert res["jitter_mm_per_frame2"] < 1e-3
    assert res["foot_slide_mm_per_frame"] == pytest.approx(1000 * np.linalg.norm(v), rel=1e-4)
    labels = np.zeros((T, 2), bool)
    labels[10:30, 0] = True
    res = figures(modified(demo_capture, tmp_path / "b.npz", foot_contact=labels, **base))
    assert res["foot_slide_mm_per_frame"] == pytest.approx(1000 * np.linalg.norm(v), rel=1e-4)
    # a tilted ground plane (normal in the y-z plane, pointing up = camera -y): only the in-plane part counts
    n = np.array([0.0, -1.0, 1.0]) / np.sqrt(2)
    plane = np.array([*n, 1.5], np.float32)
    res = figures(modified(demo_capture, tmp_path / "c.npz", ground_plane=plane, **base))
    want = np.linalg.norm(v - (v @ n) * n) * 1000
    assert res["foot_slide_mm_per_frame"] == pytest.approx(want, rel=1e-4)
    # labels without any contact (what a capture writes before contact is estimated): the contact
    # comes from the ankle heights, as without labels
    res = figures(modified(demo_capture, tmp_path / "d.npz", foot_contact=np.zeros((T, 2), bool), **base))
    assert res["foot_slide_mm_per_frame"] == pytest.approx(1000 * np.linalg.norm(v), rel=1e-4)


def test_visibility_from_the_file(demo_capture, tmp_path):
    cap = load_capture(demo_capture)
    vis = np.zeros((cap.num_frames, 66), bool)
    vis[:, video.PART_ROWS["left_hand"]] = True
    vis[: cap.num_frames // 2, video.PART_ROWS["face"]] = True
    res = figures(modified(demo_capture, tmp_path / "v.npz", keypoint_visibility=vis))["visible_fraction"]
    assert res == {"body": 0.0, "left_hand": 1.0, "right_hand": 0.0,
                   "face": pytest.approx((cap.num_frames // 2) / cap.num_frames)}


# ------------------------------------------------------------------ Blender: the capture camera
@pytest.fixture
def blender_scene():
    bpy = pytest.importorskip("bpy")
    import fullbody_addon

    fullbody_addon.register()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    s = bpy.context.scene
    s.fullbody.body_model = "BUILTIN"
    s.fullbody.face = False   # body-only avatar: its mesh is the body model's LBS
    yield s
    fullbody_addon.unregister()


@pytest.mark.parametrize("camera", ["demo", "off-centre"])
def test_blender_camera_matches_camera_K(blender_scene, demo_capture, tmp_path, camera):
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from fullbody_addon import avatar
    from test_addon_blender import world_vertices   # the evaluated (deformed) mesh in world space

    path, footage, opts = demo_capture, str(CLIP), {}   # footage given: the camera is on by default
    if camera == "off-centre":   # portrait, fx != fy, principal point off the centre: no footage
        K = np.array([[700.0, 0, 210.0], [0, 640.0, 380.0], [0, 0, 1]], np.float32)
        path = modified(demo_capture, tmp_path / "k.npz", camera_K=K, image_size=np.array([480, 720], np.int32))
        footage, opts = "", {"camera": True}
    assert bpy.ops.fullbody.import_capture(filepath=str(path), footage=footage, **opts) == {"FINISHED"}
    scene = blender_scene
    cam = scene.camera
    assert cam is not None and cam.type == "CAMERA"
    cap = load_capture(path)
    W, H = (int(v) for v in cap["image_size"])
    assert (scene.render.resolution_x, scene.render.resolution_y) == (W, H)
    mesh = avatar.avatar_mesh(avatar.find_avatar(bpy.context))
    K = cap["camera_K"].astype(np.float64)
    body = load_body_model()
    for t in (0, 40, 80):
        scene.frame_set(scene.frame_start + t)
        world = world_vertices(mesh)[::97]
        ndc = np.array([tuple(world_to_camera_view(scene, cam, Vector(p))) for p in world])
        blender_px = np.stack([ndc[:, 0] * W, (1 - ndc[:, 1]) * H], -1)
        rot = rotations.rot6d_to_matrix(cap["pose_6d"][t:t + 1].astype(np.float64))
        v, _, _ = body.forward(cap["betas"][None].astype(np.float64), rot, transl=cap["transl"][t:t + 1].astype(np.float64),
                               scale=np.array([float(cap["scale"])]))
        X = v[0][::97]
        k_px = np.stack([K[0, 0] * X[:, 0] / X[:, 2] + K[0, 2], K[1, 1] * X[:, 1] / X[:, 2] + K[1, 2]], -1)
        err = np.abs(blender_px - k_px).max()
        assert err < 1.0, f"frame {t}: Blender's camera and camera_K differ by {err:.3f} px"
    from fullbody_addon.footage import CAMERA_SOURCE_PROP

    assert cam[CAMERA_SOURCE_PROP] == str(cap["camera_source"])     # where its focal came from, on the camera
    bg = cam.data.background_images
    if footage:
        clip = bg[0].clip
        assert cam.data.show_background_images and bg[0].source == "MOVIE_CLIP"
        assert Path(bpy.path.abspath(clip.filepath)).resolve() == CLIP.resolve()
        assert tuple(clip.size) == (W, H) and clip.frame_duration == cap.num_frames
        assert clip.frame_start == scene.frame_start     # scene's first frame shows capture frame 0
        assert clip.fps == pytest.approx(float(cap["fps"]), rel=1e-3)
    else:
        assert len(bg) == 0
    # importing again updates the same camera instead of adding one
    assert bpy.ops.fullbody.import_capture(filepath=str(path), footage=footage, **opts) == {"FINISHED"}
    assert [o.name for o in bpy.data.objects if o.type == "CAMERA"] == [cam.name]


def test_lens_description_names_the_field_of_view_and_its_source():
    from model_runtime.core.camera_source import describe_camera as lens_description   # the import report's line

    K = np.array([[2211.6, 0, 540.0], [0, 2211.6, 960.0], [0, 0, 1]])
    assert lens_description(K, (1080, 1920), "scene") == "46.9 deg, measured on the scene's vanishing points"
    K60 = np.array([[1108.5, 0, 640.0], [0, 1108.5, 360.0], [0, 0, 1]])
    text = lens_description(K60, (1280, 720), "default")
    assert text.startswith("60.0 deg, the default guess") and "--fov" in text


def test_blender_missing_footage_changes_nothing(blender_scene, demo_capture, tmp_path):
    import bpy

    before = len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="none.mp4"):   # the operator's error report
        bpy.ops.fullbody.import_capture(filepath=str(demo_capture), footage=str(tmp_path / "none.mp4"))
    assert len(bpy.data.objects) == before and blender_scene.camera is None


def test_hand_figures_of_a_hand_against_itself():
    """``finger_curl_deg``: straight fingers 0, a finger bent at its base by 90 degrees 90."""
    from model_runtime.evals import video_extra as X

    hand = np.zeros((21, 3))
    names = list(X.HAND21_NAMES)
    for f, x in zip(("thumb", "index", "middle", "ring", "pinky"), (-0.04, -0.02, 0.0, 0.02, 0.04)):
        for i in range(1, 5):
            d = np.array([x, -0.08, 0.0]) / np.hypot(x, 0.08)           # fingers fan out from the wrist
            hand[names.index(f"{f}{i}")] = d * (0.08 + 0.025 * (i - 1))
    np.testing.assert_allclose(X.finger_curl_deg(hand), 0.0, atol=1e-5)
    bent = hand.copy()
    for i in range(2, 5):
        bent[names.index(f"index{i}")] = hand[names.index("index1")] + (0.0, 0.0, 0.025 * (i - 1))
    assert abs(X.finger_curl_deg(bent)[0] - 90.0) < 1e-5
