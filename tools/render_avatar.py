"""Render the merged body+face avatar with Blender (bpy as a module, headless, Workbench).

    .venv/bin/python tools/render_avatar.py                   # docs/img/avatar_rest.png, avatar_posed.png
    .venv/bin/python tools/render_avatar.py --closeup out.png # posed face/seam close-up (for checking)

Vertex colours: face = mean albedo of the 3DMM, body = one skin tone.  The
mesh comes from :class:`model_runtime.models.full_model.FullBodyModel` (model space,
Y up, facing +Z) and is turned into Blender's Z-up frame by
``fullbody_addon.axes.MODEL_TO_BLENDER``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fullbody_addon.axes import MODEL_TO_BLENDER  # noqa: E402
from model_runtime.models.load import load_body_model, load_face_model  # noqa: E402
from model_runtime.models.full_model import FullBodyModel, build_full_model  # noqa: E402
from model_runtime.core.rotations import axis_angle_to_matrix  # noqa: E402
from model_runtime.core.skeleton import JOINT_NAMES, NUM_BETAS, NUM_JOINTS  # noqa: E402

#: a relaxed pose (axis-angle in radians per joint, relative to the parent, model frame)
POSE: dict[str, tuple[float, float, float]] = {
    "left_shoulder": (0.0, 0.0, -1.1), "right_shoulder": (0.0, 0.0, 1.1),
    "left_elbow": (0.0, -1.1, 0.0), "right_elbow": (0.0, 0.6, 0.0),
    "left_hip": (-0.35, 0.0, 0.1), "left_knee": (0.6, 0.0, 0.0), "right_hip": (0.1, 0.0, -0.1),
    "neck": (0.0, 0.25, 0.0), "head": (0.1, 0.3, 0.08), "spine2": (0.05, -0.1, 0.0),
}
#: expression (built-in face: ARKit names; ignored where the face lacks them)
EXPRESSION: dict[str, float] = {"jawOpen": 0.35, "mouthSmileLeft": 0.7, "mouthSmileRight": 0.7,
                                "browInnerUp": 0.4}


def posed_mesh(full: FullBodyModel, posed: bool) -> np.ndarray:
    """Merged vertices ``(Vm, 3)`` in the model frame, rest or :data:`POSE` + :data:`EXPRESSION`."""
    if not posed:
        return full.rest_vertices()
    aa = np.zeros((NUM_JOINTS, 3))
    for name, v in POSE.items():
        aa[JOINT_NAMES.index(name)] = v
    expr = np.zeros((1, full.face.sizes["expression"]))
    for name, w in EXPRESSION.items():
        if name in full.face.exp_names:
            expr[0, full.face.exp_names.index(name)] = w
    v, _ = full.forward(np.zeros((1, NUM_BETAS)), axis_angle_to_matrix(aa)[None],
                        np.zeros((1, full.face.sizes["identity"])), expr)
    return v[0]


def render(full: FullBodyModel, verts: np.ndarray, out: Path, closeup: bool = False, size=(700, 1000)) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    vb = verts @ MODEL_TO_BLENDER.T
    mesh = bpy.data.meshes.new("avatar")
    mesh.from_pydata(vb.tolist(), [], full.merged_faces.tolist())
    mesh.update()
    col = mesh.color_attributes.new("albedo", "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([full.vertex_colors(), np.ones((full.num_vertices, 1), np.float32)], 1)
    col.data.foreach_set("color", rgba.ravel())
    mesh.shade_smooth()
    obj = bpy.data.objects.new("avatar", mesh)
    scene.collection.objects.link(obj)

    lo, hi = vb.min(0), vb.max(0)
    cam_data = bpy.data.cameras.new("cam")
    cam_data.type = "ORTHO"
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    if closeup:
        face = vb[full.face_vertex_slice]
        centre = face.mean(0)
        cam_data.ortho_scale = 2.2 * np.ptp(face, axis=0).max()
        direction = np.array([0.55, -1.0, 0.15])
        size = (900, 900)
    else:
        centre = 0.5 * (lo + hi)
        cam_data.ortho_scale = 1.08 * max(hi[2] - lo[2], (hi[0] - lo[0]) * size[1] / size[0])
        direction = np.array([0.35, -1.0, 0.12])
    direction /= np.linalg.norm(direction)
    cam.location = (centre + 4.0 * direction).tolist()
    cam.rotation_mode = "QUATERNION"
    from mathutils import Vector

    cam.rotation_quaternion = (-Vector(direction.tolist())).to_track_quat("-Z", "Y")

    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "VERTEX"
    shading.show_cavity = False
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.film_transparent = False
    scene.world = bpy.data.worlds.new("w")
    scene.world.color = (1.0, 1.0, 1.0)
    shading.background_type = "WORLD"
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"
    out.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--body", default="builtin")
    p.add_argument("--face", default="builtin")
    p.add_argument("--out-dir", type=Path, default=REPO / "docs" / "img")
    p.add_argument("--closeup", type=Path, default=None, help="only render a posed face close-up to this PNG")
    args = p.parse_args(argv)
    full = build_full_model(load_body_model(args.body), load_face_model(args.face))
    print(f"merged mesh: {full.num_vertices} vertices, {len(full.merged_faces)} triangles, "
          f"seam open edges {full.num_open_boundary_edges_on_seam()}")
    if args.closeup:
        render(full, posed_mesh(full, True), args.closeup, closeup=True)
        return 0
    render(full, posed_mesh(full, False), args.out_dir / "avatar_rest.png")
    render(full, posed_mesh(full, True), args.out_dir / "avatar_posed.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
