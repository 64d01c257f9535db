"""Feet as a user sees them (issue 10): the capture imported into Blender with *Lock Feet* and
*Ground Plane*, rendered from a camera beside and above the person, next to a top view of the
ankles' paths on the ground plane (without the feet stage | with it; planted frames as dots).

    .venv/bin/python tools/feet_picture.py CAPTURE.npz [--without CAPTURE_NO_FEET.npz] -o OUT.png
                                           [--frames 3]

CAPTURE must hold ``ground_plane`` (a capture made with the feet stage).  bpy as a module.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_runtime.core.capture_file import load_capture  # noqa: E402

PANEL = 420


def ankle_paths(path: str, plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(uv (T, 2, 2) ankle positions in the ground plane, m; contact (T, 2); valid (T,))``."""
    from model_runtime.evals.video import PosedCapture

    cap = load_capture(path)
    A = PosedCapture(cap).joints[:, [7, 8]]
    n = plane[:3] / np.linalg.norm(plane[:3])
    e1 = np.cross(n, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e1, n)                                   # towards the camera's depth
    return np.stack([A @ e1, A @ e2], -1), cap["foot_contact"], cap["valid"]


def top_view(panels: list[tuple[str, tuple]]) -> np.ndarray:
    """Top views of ankle paths on a shared scale: left ankle blue, right red, planted frames dots."""
    uv_all = np.concatenate([p[1][0][p[1][2]].reshape(-1, 2) for p in panels])
    lo, hi = uv_all.min(0) - 0.05, uv_all.max(0) + 0.05
    s = (PANEL - 40) / max(hi - lo)
    out = []
    for title, (uv, contact, valid) in panels:
        img = np.full((PANEL, PANEL, 3), 255, np.uint8)
        px = ((uv - lo) * s + 20).astype(int)
        for f, col in ((0, (200, 80, 0)), (1, (0, 0, 200))):
            pts = px[valid, f]
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, col, 1, cv2.LINE_AA)
            for p in px[valid & contact[:, f], f]:
                cv2.circle(img, tuple(int(v) for v in p), 3, col, -1, cv2.LINE_AA)
        cv2.putText(img, title, (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, "10 cm", (8, PANEL - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(img, (60, PANEL - 12), (60 + int(0.1 * s), PANEL - 12), (0, 0, 0), 2)
        out.append(img)
    return np.concatenate(out, 1)


def renders(path: str, frames: int) -> np.ndarray:
    import bpy
    from mathutils import Vector

    from fullbody_addon import avatar, importer
    from fullbody_addon.avatar_data import avatar_data_from_capture

    cap = load_capture(path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    arm, mesh = avatar.create_avatar(avatar_data_from_capture(cap), name="Capture")
    summary = importer.apply_capture(scene, arm, mesh, cap, importer.ImportOptions(frame_start=1))
    ground = bpy.data.objects[summary["ground"]]
    mat = bpy.data.materials.new("ground")
    mat.diffuse_color = (0.55, 0.6, 0.5, 1.0)
    ground.data.materials.append(mat)
    scene.world = bpy.data.worlds.new("sky")
    scene.world.color = (0.75, 0.78, 0.82)
    scene.render.engine = "BLENDER_WORKBENCH"
    sh = scene.display.shading
    sh.light, sh.color_type = "STUDIO", "MATERIAL"
    scene.render.resolution_x = scene.render.resolution_y = PANEL
    scene.render.image_settings.file_format = "PNG"
    cam = bpy.data.objects.new("view", bpy.data.cameras.new("view"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    valid = np.flatnonzero(cap["valid"])
    pick = valid[np.linspace(0, len(valid) - 1, frames).round().astype(int)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in pick:
            scene.frame_set(1 + int(f))
            bpy.context.view_layer.update()
            hip = arm.matrix_world @ arm.pose.bones["pelvis"].head
            target = Vector((hip.x, hip.y, hip.z - 0.4))
            cam.location = target + Vector((2.2, -2.2, 1.4))
            cam.rotation_euler = (target - cam.location).to_track_quat("-Z", "Y").to_euler()
            scene.render.filepath = str(Path(tmp) / f"r{f}.png")
            bpy.ops.render.render(write_still=True)
            img = cv2.imread(scene.render.filepath)
            cv2.putText(img, f"frame {f}", (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            rows.append(img)
    return np.concatenate(rows, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("capture")
    p.add_argument("--without", help="the same clip captured with --no-feet (the top view's left panel)")
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--frames", type=int, default=3)
    args = p.parse_args(argv)
    plane = load_capture(args.capture)["ground_plane"].astype(np.float64)
    if not np.linalg.norm(plane[:3]) > 0:
        sys.exit(f"{args.capture}: no ground_plane (captured without the feet stage, or feet never seen)")
    panels = ([("without the feet stage", ankle_paths(args.without, plane))] if args.without else [])
    panels.append(("with it (dots: planted)", ankle_paths(args.capture, plane)))
    top = top_view(panels)
    side = renders(args.capture, args.frames)
    w = max(top.shape[1], side.shape[1])
    pad = lambda im: np.pad(im, ((0, 0), (0, w - im.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.concatenate([pad(side), pad(top)], 0))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
