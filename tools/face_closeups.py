"""Face close-ups as a user sees them: video crop | the imported avatar rendered from the capture camera.

    .venv/bin/python tools/face_closeups.py CAPTURE.npz --video VIDEO --out docs/img/face_X.png [--frames 3]
                                           [--engine workbench|cycles] [--at F1,F2,...] [--body]

``--engine cycles`` lights the avatar by a uniform white world (unit irradiance, the albedo's own
definition), so its colours compare with the video's; Workbench (default, fast) shows the shape.

Goes through the add-on's own path (bpy as a module, headless): the avatar of the capture
(``avatar_data_from_capture``: merged body + face with the captured identity, albedo and eyes),
``importer.apply_capture`` (bones, expression shape keys, gaze), ``footage.setup_capture_camera``
(the capture's ``camera_K``), then renders the chosen frames (evenly spread over the valid ones,
plus the frame of the widest mouth opening) and crops both the video frame and the render around
the face (nose, eyes and ears of the capture's ``keypoints_2d``).  Rows: one frame each.
``--body`` crops around the whole body instead (its confident keypoints): the limbs as Blender shows them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model_runtime.core.capture_file import load_capture  # noqa: E402
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES  # noqa: E402

FACE_POINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
PANEL = 320


def face_box(kp: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int]:
    """Square crop ``(x0, y0, side)`` px around the face keypoints ``kp (5, 3)`` (x, y, conf)."""
    ok = kp[:, 2] > 0
    p = kp[ok, :2] if ok.sum() >= 2 else kp[:, :2]
    c = p.mean(0)
    ear = np.linalg.norm(kp[3, :2] - kp[4, :2]) if ok[3] and ok[4] else 2.5 * np.linalg.norm(kp[1, :2] - kp[2, :2])
    side = int(max(2.2 * ear, 48))
    x0 = int(np.clip(c[0] - side / 2, 0, max(size[0] - side, 0)))
    y0 = int(np.clip(c[1] - 0.45 * side, 0, max(size[1] - side, 0)))
    return x0, y0, min(side, size[0], size[1])


def body_box(kp: np.ndarray, size: tuple[int, int], margin: float = 0.12) -> tuple[int, int, int]:
    """Square crop ``(x0, y0, side)`` px around the confident body keypoints ``kp (24, 3)``."""
    ok = kp[:, 2] >= 0.5
    p = kp[ok, :2] if ok.sum() >= 2 else kp[:, :2]
    lo, hi = p.min(0), p.max(0)
    side = int(min(max((hi - lo).max() * (1 + 2 * margin), 48), size[0], size[1]))
    c = 0.5 * (lo + hi)
    x0 = int(np.clip(c[0] - side / 2, 0, max(size[0] - side, 0)))
    y0 = int(np.clip(c[1] - side / 2, 0, max(size[1] - side, 0)))
    return x0, y0, side


def main(argv=None) -> int:
    import cv2

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("capture")
    p.add_argument("--video", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--engine", choices=("workbench", "cycles"), default="workbench")
    p.add_argument("--at", help="comma-separated frame indices to show instead of the automatic choice")
    p.add_argument("--body", action="store_true", help="crop around the whole body instead of the face")
    args = p.parse_args(argv)

    import bpy

    from fullbody_addon import avatar, footage, importer
    from fullbody_addon.avatar_data import avatar_data_from_capture

    cap = load_capture(args.capture)
    valid = np.flatnonzero(cap["valid"])
    names = [str(n) for n in cap["expression_names"]]
    pick = list(valid[np.linspace(0, len(valid) - 1, max(args.frames - 1, 1)).round().astype(int)])
    if "jawOpen" in names:                                  # and the widest mouth opening
        jaw = cap["face_expression"][valid, names.index("jawOpen")]
        pick.append(int(valid[np.argmax(jaw)]))
    pick = sorted(set(int(f) for f in pick))[: args.frames]
    if args.at:
        pick = [int(f) for f in args.at.split(",")]
        if not all(0 <= f < cap.num_frames for f in pick):
            p.error(f"--at: frames must lie in 0..{cap.num_frames - 1}")

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    data = avatar_data_from_capture(cap)
    arm, mesh = avatar.create_avatar(data, name="Capture")
    importer.apply_capture(scene, arm, mesh, cap, importer.ImportOptions(frame_start=1))
    footage.setup_capture_camera(scene, cap, frame_start=1)
    if args.engine == "cycles":
        # a uniform white world of radiance 1 and no other light: a Lambertian albedo a renders as a times
        # its ambient occlusion, i.e. under the unit irradiance the captured albedo is defined for (the
        # fitted lighting of these clips gives 0.94-1.09 on a frontal normal), so the colours compare with
        # the video's; Workbench's studio light is dimmer and makes every face look darker
        scene.render.engine = "CYCLES"
        scene.cycles.samples = 32
        scene.cycles.use_denoising = False
        scene.world = bpy.data.worlds.new("w")
        scene.world.color = (1.0, 1.0, 1.0)
        if scene.world.node_tree is None:    # Blender < 5.0 creates worlds without nodes
            scene.world.use_nodes = True
        bg = next(n for n in scene.world.node_tree.nodes if n.type == "BACKGROUND")
        bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        bg.inputs["Strength"].default_value = 1.0
    else:
        scene.render.engine = "BLENDER_WORKBENCH"
        sh = scene.display.shading
        sh.light, sh.color_type, sh.show_cavity = "STUDIO", "VERTEX", False
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"

    size = tuple(int(v) for v in cap["image_size"])
    kp_ids = [BODY_KEYPOINT_NAMES.index(n) for n in FACE_POINTS]
    vc = cv2.VideoCapture(args.video)
    frames, i = {}, 0
    while i <= max(pick):
        ok, img = vc.read()
        if not ok:
            break
        if i in pick:
            frames[i] = cv2.resize(img, size) if (img.shape[1], img.shape[0]) != size else img
        i += 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in pick:
            scene.frame_set(1 + f)
            scene.render.filepath = str(Path(tmp) / f"r{f}.png")
            bpy.ops.render.render(write_still=True)
            rnd = cv2.imread(scene.render.filepath)
            x0, y0, s = (body_box(cap["keypoints_2d"][f, :len(BODY_KEYPOINT_NAMES)], size) if args.body
                         else face_box(cap["keypoints_2d"][f, kp_ids], size))
            crop = lambda im: cv2.resize(im[y0:y0 + s, x0:x0 + s], (PANEL, PANEL), interpolation=cv2.INTER_AREA)  # noqa: E731
            left = crop(frames[f]) if f in frames else np.zeros((PANEL, PANEL, 3), np.uint8)
            row = np.concatenate([left, crop(rnd)], 1)
            cv2.putText(row, f"frame {f}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.concatenate(rows, 0))
    print(f"wrote {args.out} (frames {pick})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
