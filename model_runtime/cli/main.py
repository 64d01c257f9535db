"""Command line: ``python -m model_runtime <command> ...``.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only maps names to modules (imported lazily so
``--help`` and light commands start fast).  Errors derived from
:class:`errors.RuntimeErrorBase` become a one-line message on stderr and their
distinct exit code.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import traceback

from ..core.errors import EXIT_INTERNAL, EXIT_USAGE, RuntimeErrorBase

# (command path, module, help)
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("model", "info"), "model_runtime.cli.model_info", "print model facts (joints, sizes, seam)"),
    (("model", "export"), "model_runtime.cli.model_export", "write the merged body+face mesh as OBJ"),
    (("train", "iknet"), "model_runtime.cli.train_iknet", "train BodyIKNet, HandIKNet or the correction stage"),
    (("train", "facenet"), "model_runtime.cli.train_facenet", "train FaceNet (face crop -> 3DMM parameters, pose)"),
    (("train", "detnet"), "model_runtime.cli.train_detnet", "train DetNet (body, hand, face keypoint detector)"),
    (("eval", "mocap-ik"), "model_runtime.evals.mocap_ik", "IK accuracy/speed on MoCap clips"),
    (("eval", "coco-wholebody"), "model_runtime.evals.coco_wholebody", "2D PCK on COCO-WholeBody"),
    (("eval", "hand3d"), "model_runtime.evals.hand3d", "3D hand MPJPE on hand-graph-cnn layout"),
    (("eval", "aflw2000"), "model_runtime.evals.aflw2000", "face landmark NME on AFLW2000-3D"),
    (("eval", "face-table5"), "model_runtime.evals.face_table5", "Table 5: face landmark and photometric error of fit/FaceNet on clips"),
    (("eval", "capture-gt"), "model_runtime.evals.capture_gt", "score a capture against a ground-truth capture"),
    (("eval", "face-video"), "model_runtime.evals.face_video", "does a capture's face follow its video (lips, lids, gaze, offset, colour)"),
    (("eval", "video"), "model_runtime.evals.video", "image alignment, foot slide, jitter of a capture (+ contact sheet)"),
    (("eval", "body3d"), "model_runtime.evals.body3d", "3D body MPJPE of the detector on H36M/3DHP frames"),
    (("eval", "synth"), "model_runtime.evals.synth", "score a detector on the fixed synthetic evaluation set, by hard-case tag"),
    (("synth",), "model_runtime.cli.synth", "synthetic training data: shards (synth --out DIR) or a preview grid (synth preview)"),
    (("capture",), "model_runtime.cli.capture", "capture a video/folder/camera into a .npz"),
    (("serve",), "model_runtime.cli.serve", "JSON-lines server for the Blender extension"),
    (("bench",), "model_runtime.cli.bench", "speed of MediaPipe alone vs the whole pipeline"),
    (("demo",), "model_runtime.cli.demo", "main job: sample clip -> .npz, .blend, .fbx"),
]


def sigterm_as_interrupt() -> None:
    """SIGTERM (a process manager, ``kill``) stops a command like Ctrl-C: ``capture`` keeps its
    finished frames, ``serve`` cancels its job and keeps the partial capture.  Main thread only."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line on stderr (``prog: error: ...``) and exit code 2, no usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m model_runtime", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, module, help_ in COMMANDS:
        parent = sub
        for i, name in enumerate(path[:-1]):
            key = " ".join(path[: i + 1])
            if key not in groups:
                gp = parent.add_parser(name, help=f"{name} commands")
                groups[key] = gp.add_subparsers(dest=f"sub_{i}", required=True, parser_class=OneLineParser)
            parent = groups[key]
        sp = parent.add_parser(path[-1], help=help_)
        sp.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(sp)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                sp.set_defaults(_missing=str(e))
            else:
                raise
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"error: this build has no '{args._module}' ({args._missing})", file=sys.stderr)
        return EXIT_INTERNAL
    mod = importlib.import_module(args._module)
    try:
        return int(mod.run(args) or 0)
    except RuntimeErrorBase as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return EXIT_INTERNAL
