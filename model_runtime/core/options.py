"""Capture options: the one typed schema shared by the CLI, ``serve`` and the Blender add-on.

Standard library only (the add-on imports it inside Blender's Python, next to
:mod:`protocol`).  Every option is a field of :class:`CaptureOptions`; its
metadata gives the command-line flag and help, so

* ``capture`` and ``bench`` generate their flags with :func:`add_arguments` and
  read them back with :func:`from_args`;
* ``serve`` builds the options of a request with :meth:`CaptureOptions.from_mapping`
  (unknown keys and wrong types are refused, naming the key);
* the add-on fills a :class:`CaptureOptions` from its settings and sends
  :meth:`CaptureOptions.to_mapping`; the smoothing slider maps to One Euro
  parameters in exactly one place, :meth:`SmoothingConfig.from_strength`.

Every value is validated when the dataclass is built: a non-finite or
out-of-range number, a reversed frame range or an unknown choice raises
:class:`OptionError` (a usage error, exit code 2) naming the option.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Final, Mapping

from .errors import EXIT_USAGE, RuntimeErrorBase

#: camera field of view (degrees across the longer image side) when neither a calibration
#: nor metadata gives it: a typical webcam / phone main camera
DEFAULT_FOV_DEG: Final[float] = 60.0
DEVICES: Final[tuple[str, ...]] = ("auto", "cpu", "cuda")
DETECTORS: Final[tuple[str, ...]] = ("mediapipe", "detnet")
FILL_MODES: Final[tuple[str, ...]] = ("hold", "interpolate")
#: how the face stage gets its parameters (:mod:`model_runtime.face.stage`)
FACE_MODES: Final[tuple[str, ...]] = ("fit", "net", "net+fit")
#: the add-on's smoothing slider default; :meth:`SmoothingConfig.from_strength` maps it to the defaults
DEFAULT_SMOOTHING_STRENGTH: Final[float] = 0.5


class OptionError(RuntimeErrorBase, ValueError):
    """An option has a wrong type or value; the message names it.  Exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, name: str, problem: str):
        self.option, self.problem = name, problem
        super().__init__(f"option '{name}' {problem}")


def _finite(name: str, value: Any, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(name, f"must be a finite number, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise OptionError(name, f"must be {'>' if lo_open else '>='} {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise OptionError(name, f"must be <= {hi:g}, got {value!r}")


def _int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(name, f"must be a whole number, got {value!r}")
    if lo is not None and value < lo:
        raise OptionError(name, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise OptionError(name, f"must be <= {hi}, got {value}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(name, f"must be one of {', '.join(choices)}, got {value!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# ----------------------------------------------------------------------------- smoothing
@dataclass(frozen=True)
class SmoothingConfig:
    """One Euro parameters (Casiez et al. 2012): ``min_cutoff`` Hz (lower = smoother when
    still), ``beta`` (higher = less lag when fast), ``d_cutoff`` Hz for the speed estimate.
    ``enabled=False`` passes values through unchanged."""

    min_cutoff: float = 1.5
    beta: float = 0.3
    d_cutoff: float = 1.0
    enabled: bool = True

    def __post_init__(self) -> None:
        _finite("smoothing.min_cutoff", self.min_cutoff, 0.0, 1e4, lo_open=True)
        _finite("smoothing.beta", self.beta, 0.0, 1e4)
        _finite("smoothing.d_cutoff", self.d_cutoff, 0.0, 1e4, lo_open=True)
        if not isinstance(self.enabled, bool):
            raise OptionError("smoothing.enabled", f"must be true or false, got {self.enabled!r}")

    @classmethod
    def from_strength(cls, strength: float) -> "SmoothingConfig":
        """The add-on's slider, ``strength`` in [0, 1], as One Euro parameters (the one mapping).

        0 is raw (filter off); :data:`DEFAULT_SMOOTHING_STRENGTH` (0.5) gives the defaults
        (1.5 Hz, beta 0.3); each 0.5 step divides the cut-off and beta by 10 (1 = 0.015 Hz,
        beta 0.03: heavy smoothing)."""
        _finite("smoothing strength", strength, 0.0, 1.0)
        if strength == 0.0:
            return cls(enabled=False)
        k = 10.0 ** (2.0 * (DEFAULT_SMOOTHING_STRENGTH - float(strength)))
        d = cls()
        return cls(min_cutoff=d.min_cutoff * k, beta=d.beta * k, d_cutoff=d.d_cutoff)


# ----------------------------------------------------------------------------- options
def _opt(default: Any, help: str, *, flag: str | None = None, cli: bool = True, **extra) -> Any:
    """A field with its command-line metadata (``flag`` None: derived from the name)."""
    return field(default=default, metadata=dict(help=help, flag=flag, cli=cli, **extra))


@dataclass(frozen=True)
class CaptureOptions:
    """Everything a capture can be asked for (``capture``/``bench`` flags, ``serve`` options,
    the add-on's panel).  Validated on construction (:class:`OptionError`)."""

    start: int = _opt(0, "first frame index (default 0)")
    end: int | None = _opt(None, "stop before this frame index (default: the end)")
    device: str = _opt("auto", "torch device for IK and face fitting (default auto: CUDA if available)",
                       choices=DEVICES)
    detector: str = _opt("mediapipe", "keypoint detector (default mediapipe)", choices=DETECTORS)
    model_complexity: int = _opt(1, "MediaPipe pose model complexity (only 1 ships with the wheel)",
                                 choices=(0, 1, 2))
    detnet_weights: str | None = _opt(None, "DetNet weights file for --detector detnet (default: the shipped "
                                            "detnet_small.pt; e.g. a run's best.pt)")
    body_model: str = _opt("builtin", "'builtin' or an official SMPL-H .npz/.pkl")
    face_model: str = _opt("builtin", "'builtin' or a Basel face model file")
    fov: float | None = _opt(None, f"camera field of view in degrees across the longer image side (default: "
                                   f"the file's focal metadata (EXIF, QuickTime), else estimated per clip by "
                                   f"the image-aligned fit; {DEFAULT_FOV_DEG:g} when it cannot be, e.g. live or "
                                   f"with --no-align)", group="camera")
    calibration: str | None = _opt(None, "camera calibration file (.json with K or fx/fy/cx/cy, OpenCV "
                                         ".yml/.xml, .npz); overrides --fov", group="camera")
    smoothing: SmoothingConfig = _opt(SmoothingConfig(), "One Euro smoothing", cli=False)
    fill: str = _opt("interpolate", "frames without a person: hold the last pose or interpolate (default)",
                     choices=FILL_MODES)
    max_gap: int = _opt(60, "longer gaps (frames) are held, not interpolated (default 60)")
    hands: bool = _opt(True, "skip hand IK (fingers stay at rest)", flag="--no-hands")
    align: bool = _opt(True, "skip the image-aligned fit (pose, translation and focal refined so the model "
                             "projects onto the 2D keypoints)", flag="--no-align")
    feet: bool = _opt(True, "skip foot contacts, the ground plane and foot locking", flag="--no-feet")
    face: bool = _opt(True, "skip face fitting", flag="--no-face")
    face_mode: str = _opt("fit", "face parameters per frame: fit (landmark tracker + keyframe appearance fit, the "
                                 "default), net (FaceNet on the face crop), net+fit (FaceNet initialises the fit)",
                          flag="--face", choices=FACE_MODES)
    facenet_weights: str | None = _opt(None, "FaceNet weights file for --face net / net+fit (default: the shipped "
                                             "facenet_<face model>.pt)")
    facenet_profile: str | None = _opt(None, "FaceNet's profile expert for turned faces: a .pt file, or 'none' "
                                             "(default: <weights stem>_profile.pt beside the weights, when there is "
                                             "one)")
    face_every: int = _opt(0, "face keyframes (albedo and lighting) on every N-th face frame; 0 (default) = "
                              "adaptive, about every 5 s; expressions and head pose are tracked on every frame")
    shape_window: int = _opt(30, "valid frames for the per-clip shape and scale (default 30)")
    folder_fps: float = _opt(30.0, "frame rate of an image folder (default 30)", flag="--fps")
    queue_size: int = _opt(8, "frames in flight per queue", cli=False)
    ik_batch: int = _opt(4, "offline: frames per IK call (live: 1)", cli=False)
    chunk_frames: int = _opt(8, "frames per capture-file chunk (what a hard kill can lose)", cli=False)

    def __post_init__(self) -> None:
        _int("start", self.start, 0)
        if self.end is not None:
            _int("end", self.end, 0)
            if self.end <= self.start:
                raise OptionError("end", f"must be after start ({self.start}), got {self.end}")
        if not isinstance(self.device, str) or not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise OptionError("device", f"must be one of {', '.join(DEVICES)} (or cuda:N), got {self.device!r}")
        _choice("detector", self.detector, DETECTORS)
        _int("model_complexity", self.model_complexity, 0, 2)
        for name in ("body_model", "face_model"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v or "\x00" in v:
                raise OptionError(name, f"must be 'builtin' or a file path, got {v!r}")
        for name in ("detnet_weights", "facenet_weights", "facenet_profile"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v or "\x00" in v):
                raise OptionError(name, f"must be a file path, got {v!r}")
        if self.fov is not None:
            _finite("fov", self.fov, 1.0, 179.0)
        if self.calibration is not None and (not isinstance(self.calibration, str) or not self.calibration):
            raise OptionError("calibration", f"must be a file path, got {self.calibration!r}")
        if not isinstance(self.smoothing, SmoothingConfig):
            raise OptionError("smoothing", f"must be a SmoothingConfig, got {type(self.smoothing).__name__}")
        _choice("fill", self.fill, FILL_MODES)
        _int("max_gap", self.max_gap, 0)
        for name in ("hands", "face", "align", "feet"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(name, f"must be true or false, got {getattr(self, name)!r}")
        _choice("face_mode", self.face_mode, FACE_MODES)
        _int("face_every", self.face_every, 0)
        _int("shape_window", self.shape_window, 1)
        _finite("folder_fps", self.folder_fps, 0.0, 1000.0, lo_open=True)
        _int("queue_size", self.queue_size, 1)
        _int("ik_batch", self.ik_batch, 1)
        _int("chunk_frames", self.chunk_frames, 1)

    # ---- protocol
    @classmethod
    def from_mapping(cls, opts: Mapping[str, Any] | None) -> "CaptureOptions":
        """From a protocol ``options`` object: unknown keys and wrong types raise :class:`OptionError`.

        ``smoothing`` is an object with :class:`SmoothingConfig`'s fields (missing ones take
        their defaults), or ``false`` for no smoothing."""
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise OptionError("options", f"must be an object, got {type(opts).__name__}")
        opts = dict(opts)
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(opts) - known)
        if unknown:
            raise OptionError(unknown[0], f"is not a capture option (known: {', '.join(sorted(known))})")
        if "smoothing" in opts:
            sm = opts["smoothing"]
            if sm is False:
                opts["smoothing"] = SmoothingConfig(enabled=False)
            elif isinstance(sm, Mapping):
                sknown = {f.name for f in fields(SmoothingConfig)}
                bad = sorted(str(k) for k in set(sm) - sknown)
                if bad:
                    raise OptionError(f"smoothing.{bad[0]}", f"is not a smoothing parameter "
                                                             f"(known: {', '.join(sorted(sknown))})")
                opts["smoothing"] = SmoothingConfig(**sm)
            else:
                raise OptionError("smoothing", f"must be an object or false, got {sm!r}")
        for name in ("fov", "folder_fps"):   # JSON has one number type: 60 means 60.0
            if isinstance(opts.get(name), int) and not isinstance(opts[name], bool):
                opts[name] = float(opts[name])
        return cls(**opts)

    def to_mapping(self) -> dict[str, Any]:
        """JSON-ready ``options`` object (inverse of :meth:`from_mapping`)."""
        return dataclasses.asdict(self)

    def resolved_device(self) -> str:
        return resolve_device(self.device)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one -> ``cpu``
    (with a warning).  Every command's ``--device`` goes through here (default ``auto``)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        import logging

        logging.getLogger(__name__).warning("device %s asked but CUDA is not available: running on the CPU", device)
        return "cpu"
    return device


# ----------------------------------------------------------------------------- command line
def _number(kind: type):
    """argparse ``type`` for a finite int/float (NaN, inf and junk are usage errors)."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        return v

    parse.__name__ = kind.__name__
    return parse


def int_at_least(minimum: int):
    """argparse ``type`` for a whole number ``>= minimum`` (junk and smaller values are usage errors)."""

    def parse(text: str) -> int:
        v = _number(int)(text)
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    parse.__name__ = f"int>={minimum}"
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`CaptureOptions` field (and the smoothing flags) to ``p``."""
    d = CaptureOptions()
    groups: dict[str, Any] = {}
    for f in fields(CaptureOptions):
        md = f.metadata
        if not md.get("cli", True):
            continue
        target = p
        if md.get("group"):
            if md["group"] not in groups:   # one group per name (an empty group breaks --help)
                groups[md["group"]] = p.add_mutually_exclusive_group()
            target = groups[md["group"]]
        flag = md.get("flag") or _flag(f.name)
        default = getattr(d, f.name)
        if isinstance(default, bool):
            target.add_argument(flag, dest=f.name, action="store_false" if default else "store_true",
                                help=md["help"])
            continue
        kind = int if f.type in ("int", "int | None") else float if f.type in ("float", "float | None") else str
        kw: dict[str, Any] = dict(dest=f.name, default=default, help=md["help"])
        if "choices" in md:
            kw["choices"] = md["choices"]
        if kind is not str:
            kw["type"] = _number(kind)
            kw["metavar"] = "N" if kind is int else "X"
        target.add_argument(flag, **kw)
    s = SmoothingConfig()
    p.add_argument("--smoothing", type=_number(float), default=None, metavar="S",
                   help=f"smoothing strength 0..1 as in the add-on (0 = raw; default "
                        f"{DEFAULT_SMOOTHING_STRENGTH:g} = the One Euro defaults below)")
    p.add_argument("--min-cutoff", type=_number(float), default=None, metavar="HZ",
                   help=f"One Euro min cutoff in Hz (default {s.min_cutoff:g}; overrides --smoothing)")
    p.add_argument("--beta", type=_number(float), default=None, metavar="X",
                   help=f"One Euro speed coefficient (default {s.beta:g}; overrides --smoothing)")
    p.add_argument("--no-smoothing", action="store_true", help="disable the One Euro filter")


def from_args(args: argparse.Namespace, **overrides) -> CaptureOptions:
    """The :class:`CaptureOptions` of parsed :func:`add_arguments` flags (validated)."""
    kw = {f.name: getattr(args, f.name) for f in fields(CaptureOptions)
          if f.metadata.get("cli", True) and hasattr(args, f.name)}
    try:
        sm = (SmoothingConfig() if args.smoothing is None else SmoothingConfig.from_strength(args.smoothing))
        if args.min_cutoff is not None or args.beta is not None:
            sm = SmoothingConfig(min_cutoff=sm.min_cutoff if args.min_cutoff is None else args.min_cutoff,
                                 beta=sm.beta if args.beta is None else args.beta, d_cutoff=sm.d_cutoff)
        if args.no_smoothing:
            sm = dataclasses.replace(sm, enabled=False)
        kw["smoothing"] = sm
        kw.update(overrides)
        return CaptureOptions(**kw)
    except OptionError as e:   # name the flag the user typed, not the field
        flags = {f.name: f.metadata.get("flag") or _flag(f.name) for f in fields(CaptureOptions)}
        flags.update({"smoothing.min_cutoff": "--min-cutoff", "smoothing.beta": "--beta",
                      "smoothing strength": "--smoothing"})
        raise OptionError(flags.get(e.option, e.option), e.problem) from None
