"""Headless batch: capture ``.npz`` -> ``.blend`` + ``.fbx`` with the real operators.

Run with a Python that has ``bpy`` (Blender as a module, the dev venv) or
inside Blender (``blender -b --python-expr``)::

    python -m fullbody_addon.headless CAPTURE.npz --blend OUT.blend --fbx OUT.fbx [--preset UNITY]

It registers the extension, imports the capture onto a new avatar exactly as
the panel's *Import Capture* does, saves the scene and exports FBX.  Used by
the main job (``python -m model_runtime demo``).  Exit code 0 on success, 5 on
a bad capture file (message names the file and key), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fullbody_addon.headless", description=__doc__.splitlines()[0])
    p.add_argument("capture", help="capture .npz written by `model_runtime capture`")
    p.add_argument("--blend", help="write the scene to this .blend")
    p.add_argument("--fbx", help="export armature, mesh, shape keys and animation to this .fbx")
    p.add_argument("--preset", default="BLENDER", choices=("BLENDER", "UNITY", "UNREAL"))
    args = p.parse_args(argv)

    import bpy

    import fullbody_addon
    from model_runtime.core.errors import ModelFileError

    from .operators import import_capture_into_scene

    bpy.ops.wm.read_factory_settings(use_empty=True)
    fullbody_addon.register()
    try:
        try:
            summary = import_capture_into_scene(bpy.context, str(Path(args.capture).resolve()), create_new=True)
        except ModelFileError as e:
            print(f"error: {e}", file=sys.stderr)
            return 5
        for w in summary.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
        if args.fbx:
            Path(args.fbx).parent.mkdir(parents=True, exist_ok=True)
            res = bpy.ops.fullbody.export_fbx(filepath=str(Path(args.fbx).resolve()), preset=args.preset)
            if res != {"FINISHED"}:
                print(f"error: FBX export to {args.fbx} failed", file=sys.stderr)
                return 1
        if args.blend:
            Path(args.blend).parent.mkdir(parents=True, exist_ok=True)
            bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.blend).resolve()))
        print(json.dumps({k: v for k, v in summary.items() if isinstance(v, (int, float, str, list))}))
        return 0
    finally:
        fullbody_addon.unregister()


if __name__ == "__main__":
    sys.exit(main())
