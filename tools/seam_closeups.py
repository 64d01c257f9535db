"""Close-ups of the seam where the 3DMM face meets the scalp, rendered with Blender (bpy, headless).

    .venv/bin/python tools/seam_closeups.py --out docs/img/seam_after.png [--capture CAPTURE.npz]
                                            [--engine workbench|cycles] [--views jaw|forehead]

The merged built-in model (``build_full_model``) in the rest pose with the capture's face identity
(none: the mean face), rows: neutral expression / ``jawOpen`` 1 + ``jawLeft`` 0.5 with the head
turned 30 degrees; columns (``--views jaw``): the person's right jaw side, the chin from
below-front, the left jaw side, or (``--views forehead``) the top of the face patch from
above-front.  One grey, smooth-shaded mesh, studio light, so only the geometry shows.  The
``model_runtime`` imported is the first on ``sys.path`` (``PYTHONPATH=<exported older tree>`` renders an older seam).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    import model_runtime  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PANEL = 360
#: camera targets (model frame, m: x left of the person, y up, z forward) and view directions
VIEWS = {"jaw": (("right jaw", (-0.045, 0.59, 0.05), (-0.85, 0.05, 0.5)),
                 ("chin", (0.0, 0.58, 0.07), (0.0, -0.3, 0.95)),
                 ("left jaw", (0.045, 0.59, 0.05), (0.85, 0.05, 0.5))),
         "forehead": (("forehead R", (-0.019, 0.739, 0.127), (-0.2, 0.5, 0.85)),
                      ("forehead", (0.0, 0.74, 0.125), (0.0, 0.4, 0.9)),
                      ("forehead L", (0.019, 0.739, 0.127), (0.2, 0.5, 0.85)))}


def to_blender(p: np.ndarray) -> np.ndarray:
    """Model frame (Y up, +Z forward) ``(..., 3)`` -> Blender (Z up, -Y forward) ``(..., 3)``."""
    p = np.asarray(p, np.float64)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1)


def main(argv=None) -> int:
    import cv2
    import bpy

    from model_runtime.core.rotations import axis_angle_to_matrix
    from model_runtime.core.skeleton import HEAD_JOINT, JOINT_NAMES, NUM_JOINTS
    from model_runtime.models.body_model import load_builtin_body
    from model_runtime.models.face_model import load_builtin_face
    from model_runtime.models.full_model import build_full_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--capture", help="take face_identity from this capture .npz")
    p.add_argument("--engine", choices=("workbench", "cycles"), default="workbench")
    p.add_argument("--views", choices=tuple(VIEWS), default="jaw")
    args = p.parse_args(argv)
    views = VIEWS[args.views]

    m = build_full_model(load_builtin_body(), load_builtin_face())
    ki, ke = m.face.sizes["identity"], m.face.sizes["expression"]
    ident = np.zeros(ki)
    if args.capture:
        v = np.load(args.capture)["face_identity"].astype(np.float64)[:ki]
        ident[: len(v)] = v
    names = list(m.face.exp_names)
    talk = np.zeros(ke)
    talk[names.index("jawOpen")], talk[names.index("jawLeft")] = 1.0, 0.5
    rot = np.tile(np.eye(3), (2, NUM_JOINTS, 1, 1))
    half = axis_angle_to_matrix(np.array([0.0, np.radians(15), 0.0]))        # 30 deg over neck + head
    rot[1, JOINT_NAMES.index("neck")] = rot[1, HEAD_JOINT] = half
    verts, _ = m.forward(np.zeros((2, 16)), rot, np.tile(ident, (2, 1)), np.stack([np.zeros(ke), talk]))
    # head-turned row: look at the same skin points, turned with the head
    rest = m.rest_vertices().astype(np.float64)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = PANEL
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"
    if args.engine == "cycles":
        scene.render.engine = "CYCLES"
        scene.cycles.samples = 16
        scene.world = bpy.data.worlds.new("w")
        scene.world.color = (0.6, 0.6, 0.6)
    else:
        scene.render.engine = "BLENDER_WORKBENCH"
        sh = scene.display.shading
        sh.light, sh.color_type, sh.single_color = "STUDIO", "SINGLE", (0.8, 0.8, 0.8)
    mesh = bpy.data.meshes.new("merged")
    mesh.from_pydata(to_blender(verts[0]).tolist(), [], m.merged_faces.tolist())
    mesh.shade_smooth()
    obj = bpy.data.objects.new("merged", mesh)
    scene.collection.objects.link(obj)
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.data.lens, cam.data.clip_start = 50.0, 0.01
    scene.collection.objects.link(cam)
    scene.camera = cam
    target = bpy.data.objects.new("target", None)
    scene.collection.objects.link(target)
    con = cam.constraints.new("TRACK_TO")
    con.target, con.track_axis, con.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    # the skin point nearest each view target, to follow it when the head turns
    tgt_ids = [int(np.argmin(np.linalg.norm(rest - np.array(t), axis=1))) for _, t, _ in views]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(2):
            mesh.vertices.foreach_set("co", to_blender(verts[r]).astype(np.float32).ravel())
            mesh.update()
            head_R = rot[r, JOINT_NAMES.index("neck")] @ rot[r, HEAD_JOINT]
            panels = []
            for (name, _, d), vid in zip(views, tgt_ids):
                t = verts[r, vid]
                eye = t + 0.22 * (head_R @ (np.array(d) / np.linalg.norm(d)))
                target.location = to_blender(t).tolist()
                cam.location = to_blender(eye).tolist()
                scene.render.filepath = str(Path(tmp) / f"{r}_{name}.png")
                bpy.ops.render.render(write_still=True)
                img = cv2.imread(scene.render.filepath)
                label = name + (" / jawOpen 1, jawLeft .5, head 30 deg" if r else " / neutral")
                for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                    cv2.putText(img, label, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, width, cv2.LINE_AA)
                panels.append(img)
            rows.append(np.concatenate(panels, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.concatenate(rows, 0))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
