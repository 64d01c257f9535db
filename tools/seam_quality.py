"""The seam's strip triangles over identities and expressions (issue 11, point 5): folds and slivers.

    .venv/bin/python tools/seam_quality.py [--captures out/face/centred/d0.npz ...]

Builds the merged built-in model and poses it (rest pose) with the identities of
``tests/test_bridge.py::test_builtin_seam_does_not_fold_under_identity_and_expression`` (mean, 8
random N(0, 1), +-2 on the first 6 components; plus the ``face_identity`` of each capture given),
each with the neutral face and every expression key at 1, and prints the worst
``bridge.strip_quality`` (folded strip triangles, smallest corner angle, largest aspect) and, for
the neutral face, how far the seam's vertices (both loops) stand out of or sink into their ring of
neighbours (along the vertex normal, from the neighbours' mean; mm).  The
``model_runtime`` imported is the first on ``sys.path``: ``PYTHONPATH=<exported older tree>``
measures an older bridge (the metric is then taken from this checkout's ``bridge.py``).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:
    import model_runtime  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    from model_runtime.core.skeleton import NUM_JOINTS
    from model_runtime.models import bridge
    from model_runtime.models.body_model import load_builtin_body
    from model_runtime.models.face_model import load_builtin_face
    from model_runtime.models.full_model import build_full_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--captures", nargs="*", default=[])
    args = p.parse_args(argv)
    if not hasattr(bridge, "strip_quality"):          # an older tree: this checkout's metric
        spec = importlib.util.spec_from_file_location("model_runtime.models._bridge_here",
                                                      REPO / "model_runtime/models/bridge.py")
        here = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(here)
        quality = here.strip_quality
    else:
        quality = bridge.strip_quality
    m = build_full_model(load_builtin_body(), load_builtin_face())
    Ki, Ke = m.face.sizes["identity"], m.face.sizes["expression"]
    rng = np.random.default_rng(0)
    ids = {"synthetic": np.concatenate([np.zeros((1, Ki)), rng.normal(size=(8, Ki)),
                                        2 * np.eye(Ki)[:6], -2 * np.eye(Ki)[:6]])}
    for c in args.captures:
        v = np.zeros((1, Ki))
        f = np.load(c)["face_identity"].astype(np.float64)[:Ki]
        v[0, : len(f)] = f
        ids[Path(c).stem] = v
    E = np.concatenate([np.zeros((1, Ke)), np.eye(Ke)])
    F = m.merged_faces.astype(np.int64)
    which = np.arange(len(F) - len(m.bridge_faces), len(F))
    rot = np.tile(np.eye(3), (len(E), NUM_JOINTS, 1, 1))
    seam = np.concatenate([m.hole_loop, m.face_loop])
    e = F[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    e = np.unique(np.sort(e, axis=1), axis=0)
    e = np.concatenate([e, e[:, ::-1]])                                         # (2E, 2) both ways

    def bump_mm(v: np.ndarray) -> tuple[float, float]:
        """(deepest, proudest) seam vertex vs its neighbours' mean along its normal, mm, verts (V, 3)."""
        deg = np.bincount(e[:, 0], minlength=len(v))
        mean = np.stack([np.bincount(e[:, 0], weights=v[e[:, 1], c], minlength=len(v)) for c in range(3)], 1)
        h = ((v - mean / np.maximum(deg, 1)[:, None]) * bridge.vertex_normals_np(v, F)).sum(1)[seam] * 1e3
        return float(h.min()), float(h.max())

    print(f"strip {len(which)} triangles, hole {len(m.hole_loop)} / rim {len(m.face_loop)} vertices")
    for name, group in ids.items():
        qs, bumps = [], []
        for idv in group:
            v = m.forward(np.zeros((len(E), 16)), rot, np.tile(idv, (len(E), 1)), E)[0]
            qs += [quality(v[k], F, which) for k in range(len(E))]
            bumps.append(bump_mm(v[0].astype(np.float64)))
        folded = np.array([q["folded"] for q in qs])
        print(f"{name}: {len(qs)} meshes, {int((folded > 0).sum())} with folds (neutral: {int(folded[0])}), "
              f"most folded {int(folded.max())}, min angle {min(q['min_angle'] for q in qs):.2f} deg, "
              f"max aspect {max(q['max_aspect'] for q in qs):.1f}, seam vertex vs neighbours "
              f"{min(b[0] for b in bumps):+.1f} .. {max(b[1] for b in bumps):+.1f} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
