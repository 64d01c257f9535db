"""Bench: import a long capture onto an avatar in Blender.

``python -m fullbody_addon.bench_import [--frames 10000] [--repeat 3]`` (repository
checkout, bpy as a module).  Writes a capture of random smooth motion with 52
expression values per frame, builds the avatar once (built-in body + face when
the assets exist; otherwise the test suite's SMPL-H-structured body with 52
shape keys), then times ``load_capture`` + :func:`importer.apply_capture`
(conversion + keyframes for 52 bones and 52 shape keys, the foot-lock rig and the ground plane
of alternating contact labels) and prints the best run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    import bpy
    import numpy as np

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tests"))
    import blender_helpers as H  # the capture writer and fallback body used by the tests

    from . import avatar, avatar_data, importer
    from ._runtime import capture_file

    bpy.ops.wm.read_factory_settings(use_empty=True)
    with tempfile.TemporaryDirectory() as tmp:
        face_names = tuple(f"expr_{i:02d}" for i in range(52))
        try:
            from model_runtime.models.face_model import load_builtin_face

            face_names = load_builtin_face().exp_names[:52]
        except Exception:  # noqa: BLE001 - no built-in face in this build
            pass
        t0 = time.perf_counter()
        path = H.write_capture(Path(tmp) / "bench.npz", T=args.frames, seed=0, expression_names=face_names)
        t_write = time.perf_counter() - t0
        cap = capture_file.load_capture(path)
        data = avatar_data.avatar_data_from_capture(cap, body=H.body_model())
        if len(data.shape_key_names) < len(face_names):
            H.add_test_expressions(data, face_names)
        t0 = time.perf_counter()
        arm, mesh = avatar.create_avatar(data, name="Bench")
        t_avatar = time.perf_counter() - t0
        runs = []
        for _ in range(args.repeat):
            for a in list(bpy.data.actions):
                bpy.data.actions.remove(a)
            t0 = time.perf_counter()
            cap = capture_file.load_capture(path)
            t1 = time.perf_counter()
            # feet (issue 10): alternating 0.5 s contact spans and a ground plane, so the foot-lock
            # rig and the ground object are built and timed too
            T = cap.num_frames
            cap.data["foot_contact"] = np.stack([(np.arange(T) // 15) % 2 == 0, (np.arange(T) // 15) % 2 == 1], 1)
            cap.data["ground_plane"] = np.array([0.0, -1.0, 0.0, 1.0], np.float32)
            summary = importer.apply_capture(bpy.context.scene, arm, mesh, cap)
            t2 = time.perf_counter()
            runs.append((t2 - t0, t1 - t0, t2 - t1))
        total, load, keys = min(runs)
        print(f"capture: {args.frames} frames, {summary['bones']} bones, {summary['shape_keys']} shape keys "
              f"(avatar: {len(data.vertices)} vertices; {data.source})")
        print(f"write capture {t_write:.2f} s; create avatar {t_avatar:.2f} s")
        print(f"import (best of {args.repeat}): {total:.3f} s = load {load:.3f} s + convert/keyframes {keys:.3f} s")
        assert summary["frames"] == args.frames and np.isfinite(total)
        assert len(summary["foot_lock"]) == 2 and summary["ground"] is not None
    return 0


if __name__ == "__main__":
    sys.exit(main())
