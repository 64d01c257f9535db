"""``python -m model_runtime model info``: facts about the body, face and merged model.

    python -m model_runtime model info --json
    python -m model_runtime model info --body SMPLH_male.pkl --face BFM_model_front.mat

Prints joint names, vertex/triangle counts of body, face and merged mesh, the
beta size, the face basis sizes, the expression names and the number of open
boundary edges along the face-body seam (0 = watertight).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..models.body_model import BodyModel
from ..models.face_model import FaceModel
from ..models.load import load_body_model, load_face_model
from ..models.full_model import FullBodyModel, build_full_model
from ..core.skeleton import NUM_BETAS

__all__ = ["add_model_arguments", "load_models", "add_arguments", "run", "model_facts"]


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--body``, ``--face``, ``--face-expression`` (shared by ``model info`` and ``model export``)."""
    p.add_argument("--body", default="builtin", metavar="builtin|PATH",
                   help="body model: 'builtin' or an official SMPL-H .npz/.pkl (default: builtin)")
    p.add_argument("--face", default="builtin", metavar="builtin|PATH",
                   help="face model: 'builtin', BFM_model_front.mat or 01_MorphableModel.mat (default: builtin)")
    p.add_argument("--face-expression", type=Path, default=None, metavar="PATH",
                   help="expression basis for a Basel 2009 face (Exp_Pca.bin, or .npz/.mat with 'basis')")


def load_models(args: argparse.Namespace) -> tuple[BodyModel, FaceModel, FullBodyModel]:
    body = load_body_model(args.body)
    face = load_face_model(args.face, expression_basis=args.face_expression)
    return body, face, build_full_model(body, face)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def model_facts(body: BodyModel, face: FaceModel, full: FullBodyModel) -> dict:
    """The facts printed by ``model info`` as a JSON-ready dict."""
    return {
        "body": {"kind": body.kind, "source": body.source, "vertices": body.num_vertices,
                 "triangles": int(len(body.faces)), "betas": NUM_BETAS,
                 "pose_correctives": body.posedirs is not None},
        "joints": list(body.joint_names),
        "face": {"kind": face.kind, "source": face.source, "vertices": face.num_vertices,
                 "triangles": int(len(face.faces)), "basis_sizes": face.sizes,
                 "expression_names": list(face.exp_names)},
        "merged": {"vertices": full.num_vertices, "triangles": int(len(full.merged_faces)),
                   "body_vertices_kept": full.num_body_vertices, "bridge_triangles": int(len(full.bridge_faces)),
                   "hole_loop_vertices": int(len(full.hole_loop)), "face_loop_vertices": int(len(full.face_loop)),
                   "seam_open_boundary_edges": full.num_open_boundary_edges_on_seam(),
                   "other_open_boundary_edges": full.num_open_boundary_edges_elsewhere(),
                   "face_to_body_scale": full.face_to_body.scale, "alignment_rms_m": full.alignment_rms},
    }


def run(args: argparse.Namespace) -> int:
    facts = model_facts(*load_models(args))
    if args.json:
        json.dump(facts, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    b, f, m = facts["body"], facts["face"], facts["merged"]
    print(f"body   {b['kind']:8s} {b['vertices']:6d} vertices {b['triangles']:6d} triangles, "
          f"{len(facts['joints'])} joints, {b['betas']} betas ({b['source']})")
    print(f"face   {f['kind']:8s} {f['vertices']:6d} vertices {f['triangles']:6d} triangles, "
          f"bases {f['basis_sizes']} ({f['source']})")
    print(f"merged          {m['vertices']:6d} vertices {m['triangles']:6d} triangles, "
          f"bridge {m['bridge_triangles']} triangles ({m['hole_loop_vertices']} hole / {m['face_loop_vertices']} face rim)")
    print(f"seam open boundary edges: {m['seam_open_boundary_edges']}  (elsewhere: {m['other_open_boundary_edges']})")
    print(f"face->body scale {m['face_to_body_scale']:.4g}, rim alignment rms {1000 * m['alignment_rms_m']:.2f} mm")
    print("joints: " + " ".join(facts["joints"]))
    print("expressions: " + " ".join(f["expression_names"]))
    return 0
