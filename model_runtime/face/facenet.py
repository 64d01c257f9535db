"""FaceNet (paper Sec. 3.4): a small CNN from a face crop to the 3DMM's parameters and the head pose.

Input: a square crop around the face box (:func:`crop_box`: centre of the box, side
:data:`CROP_SCALE` x its longer side), resized to ``input_size`` (96) px, RGB in 0..1.
Output per crop (:class:`FaceNetPrediction`), for the *loaded* face model's sizes
(``identity Ki``, ``expression Ke``, ``albedo Ka``, ``sh 27``; built-in 80/52/80/27, BFM 80/64/80/27):

* the 3DMM coefficients (built-in ARKit expressions through a sigmoid, so in [0, 1]);
* the head pose in the *crop camera*: rotation (6D -> ``(3, 3)``), the crop-pixel position of the
  face's anchor (the weighted centroid of the mean face's landmark points) and its scale
  (crop px per metre).  :func:`pose_in_camera` turns that into ``R, t`` of the image's
  pinhole camera ``K`` for any crop (a crop is a scaled, shifted pinhole camera: same 3D frame,
  focal ``a f``).

Weights ship as ``weights/facenet_<face model>.pt`` (fp16 state dict) with a ``.json`` of
metadata (format version, face-model kind and signature, sizes, input size, crop scale,
training summary), checked when loading: a missing, corrupt or mismatched file raises
:class:`~model_runtime.core.errors.ModelFileError` naming the file and the field.

**Profile expert.** The real training faces are mostly frontal (95 % within 32 deg of yaw), and the
network trained on them fails on turned faces.  A second network of the same shape, trained with
synthetic renders at every yaw as well (``train facenet --expert profile``), ships beside it as
``facenet_<face model>_profile.pt``; its ``.json`` holds ``gate_yaw_deg [lo, hi]``: the 95th and 99th
percentile of the |yaw| of the real training faces.  :meth:`FaceNet.process` runs the expert on every
crop (it also sees turned faces, so its yaw is the one to trust), and the main network where the
expert's |yaw| is below ``hi``; the raw outputs are blended with the expert's weight
:func:`profile_weight` (0 below ``lo``, 1 above ``hi``, smooth between): frontal faces get the main
network's output exactly.

Example::

    net = FaceNet(load_face_model(), device="cpu")
    crops, A = net.crops(image_bgr, boxes)              # (B, 3, 96, 96), (B, 2, 3)
    pred = net.process(crops)                           # crop-frame parameters
    R, t = pose_in_camera(pred, A, K)                   # image camera
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn

from ..core.errors import ModelFileError
from ..models.face_model import NUM_SH, FaceModel

FACENET_VERSION: Final[int] = 1
WEIGHTS_DIR: Final[Path] = Path(__file__).resolve().parent / "weights"
INPUT_SIZE: Final[int] = 96
#: crop side = CROP_SCALE x the longer side of the face box (MediaPipe's landmark box: brow to chin)
CROP_SCALE: Final[float] = 1.4
#: crop px per metre of a typical face filling the crop (log-scale output 0 <=> this)
SCALE0_PER_CROP: Final[float] = 4.5
#: rotation 6D of a frontal face (model Y up, +Z towards the camera -> camera y down, z forward)
FRONTAL_ROT6D: Final[tuple[float, ...]] = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


#: the profile expert's file next to the main weights: ``<main stem>_profile.pt``
PROFILE_SUFFIX: Final[str] = "_profile"


def weights_path(face_model: FaceModel, weights_dir: Path | str = WEIGHTS_DIR, expert: str = "") -> Path:
    """``weights_dir/facenet_<kind>.pt``, or ``facenet_<kind>_profile.pt`` for ``expert="profile"`` (metadata
    next to it as ``.json``)."""
    return Path(weights_dir) / f"facenet_{face_model.kind}{'_' + expert if expert else ''}.pt"


def yaw_deg(R: np.ndarray) -> np.ndarray:
    """Head yaw of rotations ``R (..., 3, 3)`` (``x_cam = R x_model``, model +Z out of the face, camera
    y down, z forward) -> ``(...)`` degrees: the face's forward axis turned about the camera's y axis
    (0 = facing the camera, sign = towards camera +x)."""
    fwd = np.asarray(R, np.float64)[..., :, 2]
    return np.degrees(np.arctan2(fwd[..., 0], -fwd[..., 2]))


def profile_weight(yaw: np.ndarray, gate: tuple[float, float]) -> np.ndarray:
    """The profile expert's blend weight for ``yaw (B,)`` degrees and ``gate = (lo, hi)``: 0 for |yaw| <= lo,
    1 for |yaw| >= hi, a smoothstep between (no jump as a head turns)."""
    lo, hi = gate
    t = np.clip((np.abs(np.asarray(yaw, np.float64)) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def face_anchor(face_model: FaceModel, correspondence) -> np.ndarray:
    """``(3,)`` model-space anchor of the pose output: weighted centroid of the mean face's 468 landmark points."""
    pts = correspondence.points(np.asarray(face_model.mean_shape, np.float64)[None])[0]
    w = np.asarray(correspondence.weights, np.float64)
    return (w @ pts / w.sum()).astype(np.float32)


# ----------------------------------------------------------------------------- crops
def crop_box(face_box: np.ndarray, scale: float = CROP_SCALE) -> np.ndarray:
    """Face boxes ``(B, 4)`` x, y, w, h px -> square crops ``(B, 3)`` centre x, centre y, side px."""
    b = np.asarray(face_box, np.float64).reshape(-1, 4)
    side = scale * np.maximum(b[:, 2], b[:, 3])
    return np.stack([b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2, np.maximum(side, 1.0)], -1)


def crop_affine(crops: np.ndarray, size: int) -> np.ndarray:
    """Square crops ``(B, 3)`` (centre, side) -> affine maps image px -> crop px ``(B, 2, 3)``
    (``q = a p + b``, ``a = size / side``; pixel corners at integers, as everywhere here)."""
    c = np.asarray(crops, np.float64).reshape(-1, 3)
    a = size / c[:, 2]
    A = np.zeros((len(c), 2, 3))
    A[:, 0, 0] = A[:, 1, 1] = a
    A[:, :, 2] = size / 2.0 - a[:, None] * c[:, :2]
    return A


def cut_crops(image_bgr: np.ndarray, A: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image_bgr (H, W, 3)`` uint8 by the affine maps ``A (B, 2, 3)`` -> ``(B, size, size, 3)`` uint8
    (bilinear, border replicated).  cv2's pixel centres are integers, ours half-integers: shifted here."""
    import cv2

    out = np.empty((len(A), size, size, 3), np.uint8)
    for i, Ai in enumerate(np.asarray(A, np.float64)):
        M = Ai.copy()
        M[:, 2] += M[:, :2].sum(1) * 0.5 - 0.5          # centre convention: q_cv = A(p_cv + .5) - .5
        out[i] = cv2.warpAffine(image_bgr, M, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def to_input(crops_bgr: np.ndarray | torch.Tensor, device="cpu") -> torch.Tensor:
    """uint8 BGR crops ``(B, S, S, 3)`` -> network input ``(B, 3, S, S)`` float RGB in 0..1."""
    t = torch.as_tensor(np.ascontiguousarray(crops_bgr), device=device)
    return t.flip(-1).permute(0, 3, 1, 2).float().div_(255.0)


# ----------------------------------------------------------------------------- network
def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FaceNetModule(nn.Module):
    """The network: 7 3x3 conv layers (96 -> 3 px, 16..256 channels), one hidden FC layer, a linear head.

    ``sizes``: the face model's ``{"identity", "expression", "albedo", "sh"}``;
    ``expression_box``: expressions through a sigmoid (built-in ARKit weights in [0, 1]).
    forward: ``x (B, 3, S, S)`` RGB 0..1 -> raw outputs ``(B, 9 + Ki + Ke + Ka + 27)``.
    """

    def __init__(self, sizes: dict[str, int], expression_box: bool, input_size: int = INPUT_SIZE,
                 width: int = 16, hidden: int = 192):
        super().__init__()
        self.sizes = {k: int(sizes[k]) for k in ("identity", "expression", "albedo", "sh")}
        if self.sizes["sh"] != 3 * NUM_SH:
            raise ValueError(f"sh size must be {3 * NUM_SH}, got {self.sizes['sh']}")
        self.expression_box = bool(expression_box)
        self.input_size = int(input_size)
        w = width
        chans = [(3, w, 2), (w, 32, 2), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2)]
        self.trunk = nn.Sequential(*[_conv(a, b, s) for a, b, s in chans])
        side = input_size // 32
        n_out = 9 + sum(self.sizes.values())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(256 * side * side, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, n_out))
        self.register_buffer("mean_rgb", torch.tensor([0.5, 0.45, 0.4]).view(1, 3, 1, 1))
        with torch.no_grad():                       # start at a frontal mean face with white ambient light
            last = self.head[-1]
            last.weight.mul_(0.01)
            bias = torch.zeros(n_out)
            bias[:6] = torch.tensor(FRONTAL_ROT6D)
            o = 9 + self.sizes["identity"]
            if self.expression_box:
                bias[o:o + self.sizes["expression"]] = -3.0
            sh0 = 9 + self.sizes["identity"] + self.sizes["expression"] + self.sizes["albedo"]
            bias[sh0:sh0 + 3 * NUM_SH:NUM_SH] = 0.8
            last.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x - self.mean_rgb))

    def split(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs ``(B, D)`` -> ``rot6d (B, 6)``, ``uv (B, 2)`` (anchor, crop px / size - 0.5),
        ``log_scale (B,)``, ``identity``, ``expression`` (sigmoid if boxed), ``albedo``, ``sh (B, 27)``."""
        s = self.sizes
        out, o = {"rot6d": raw[:, :6], "uv": raw[:, 6:8], "log_scale": raw[:, 8]}, 9
        for k in ("identity", "expression", "albedo", "sh"):
            out[k] = raw[:, o:o + s[k]]
            o += s[k]
        if self.expression_box:
            out["expression"] = torch.sigmoid(out["expression"])
        return out


def crop_pose(out: dict[str, torch.Tensor], K_crop: torch.Tensor, anchor: torch.Tensor, size: int):
    """Pose in the crop camera: ``out`` of :meth:`FaceNetModule.split`, ``K_crop (B, 3, 3)``,
    ``anchor (3,)`` -> ``R (B, 3, 3)``, ``t (B, 3)`` with ``x_cam = R x_model + t`` (differentiable)."""
    from ..core.rotations import rot6d_to_matrix

    R = rot6d_to_matrix(out["rot6d"])
    f = K_crop[:, 0, 0]
    z = f / (SCALE0_PER_CROP * size * torch.exp(out["log_scale"]))
    uv = (out["uv"] + 0.5) * size
    xy = (uv - K_crop[:, :2, 2]) / f[:, None] * z[:, None]
    anchor_cam = torch.cat([xy, z[:, None]], -1)
    return R, anchor_cam - R @ anchor


def fuse_batchnorm(net: FaceNetModule) -> FaceNetModule:
    """Fold every BatchNorm of the (eval-mode) trunk into its convolution, in place (inference only:
    ~15 % faster at batch 1 on a CPU)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for block in net.trunk:
        if isinstance(block[1], nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
    return net


# ----------------------------------------------------------------------------- inference
class InferenceNet:
    """The forward pass of an eval-mode, BatchNorm-folded (:func:`fuse_batchnorm`) :class:`FaceNetModule`
    straight from uint8 BGR crops, as plain functional calls on channels-last weights.

    * oneDNN runs the convolutions without a layout change per layer (channels-last weights; the
      ``(B, S, S, 3)`` crops viewed as ``(B, 3, S, S)`` are channels-last already, no copy);
    * the input conversion is folded into the first convolution: BGR -> RGB swaps its input
      channels, ``/ 255`` scales its weights, so the input costs one subtraction
      (``conv(W, x / 255 - m) = conv(W / 255, x - 255 m)``, zero padding included);
    * no Python module is entered per layer (7 blocks of 3 modules and the head).

    ``__call__(crops (B, S, S, 3) uint8 BGR tensor)`` -> raw outputs ``(B, D)``, the module's on
    :func:`to_input` of the same crops (to float rounding).  On one CPU thread FaceNet's CPU time is
    ~0.55x the plain module's (docs/facenet.md, "Speed")."""

    def __init__(self, net: FaceNetModule):
        if any(not isinstance(block[1], nn.Identity) for block in net.trunk):
            raise ValueError("fold the BatchNorms first (fuse_batchnorm)")
        cl = torch.channels_last
        self.layers = []
        for k, block in enumerate(net.trunk):
            c = block[0]
            w = c.weight.detach()
            if k == 0:
                w = w[:, [2, 1, 0]] / 255.0                          # BGR input, 0..255
            self.layers.append((w.contiguous(memory_format=cl), c.bias.detach(), c.stride, c.padding))
        fc1, fc2 = net.head[1], net.head[3]
        self.fc = [(fc1.weight.detach(), fc1.bias.detach()), (fc2.weight.detach(), fc2.bias.detach())]
        self.mean_bgr255 = (net.mean_rgb.detach()[:, [2, 1, 0]] * 255.0).contiguous()

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h = crops.permute(0, 3, 1, 2).float() - self.mean_bgr255         # (B, 3, S, S), channels-last strides
        for w, b, stride, pad in self.layers:
            h = torch.relu_(F.conv2d(h, w, b, stride, pad))
        (w1, b1), (w2, b2) = self.fc
        return F.linear(torch.relu_(F.linear(h.flatten(1), w1, b1)), w2, b2)


@dataclass(frozen=True)
class FaceNetPrediction:
    """Per crop (numpy float32): identity ``(B, Ki)``, expression ``(B, Ke)``, albedo ``(B, Ka)``,
    sh ``(B, 27)``; pose in the crop camera: rot6d ``(B, 6)``, uv ``(B, 2)``, log_scale ``(B,)``;
    ``profile_weight (B,)``: the profile expert's share of each (None without an expert)."""

    identity: np.ndarray
    expression: np.ndarray
    albedo: np.ndarray
    sh: np.ndarray
    rot6d: np.ndarray
    uv: np.ndarray
    log_scale: np.ndarray
    profile_weight: np.ndarray | None = None


def pose_in_camera(pred: FaceNetPrediction, A: np.ndarray, K: np.ndarray, anchor: np.ndarray, size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Head pose in the image camera: ``A (B, 2, 3)`` image -> crop px (axis-aligned crops),
    ``K (3, 3)`` -> ``R (B, 3, 3)``, ``t (B, 3)`` (``x_cam = R x_model + t``, metres).  :func:`crop_pose` in
    numpy: the crop camera has focal ``a f`` and the image's principal point mapped by ``A``."""
    from ..core.rotations import rot6d_to_matrix

    A = np.asarray(A, np.float64)
    K = np.asarray(K, np.float64)
    f = A[:, 0, 0] * K[0, 0]                                              # (B,) crop focal
    c = np.einsum("bij,j->bi", A[:, :, :2], K[:2, 2]) + A[:, :, 2]        # (B, 2) crop principal point
    R = rot6d_to_matrix(np.asarray(pred.rot6d, np.float64))
    z = f / (SCALE0_PER_CROP * size * np.exp(np.asarray(pred.log_scale, np.float64)))
    uv = (np.asarray(pred.uv, np.float64) + 0.5) * size
    anchor_cam = np.concatenate([(uv - c) / f[:, None] * z[:, None], z[:, None]], -1)
    t = anchor_cam - R @ np.asarray(anchor, np.float64)
    return R.astype(np.float32), t.astype(np.float32)


def _meta_error(path: Path, field: str, problem: str) -> ModelFileError:
    return ModelFileError(path, field, problem + "; retrain with 'python -m model_runtime train facenet' "
                                                 "or use --face fit")


def read_metadata(json_path: Path, face_model: FaceModel) -> dict:
    """Read and check ``facenet_<kind>.json`` against ``face_model`` -> the metadata dict."""
    from .correspondence import model_signature

    if not json_path.is_file():
        raise ModelFileError(json_path, None, f"is missing: no FaceNet weights for the {face_model.kind} face "
                                              "model; train them with 'python -m model_runtime train facenet' "
                                              "or use --face fit")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(json_path, None, f"cannot be read ({e})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(json_path, None, "is not a JSON object")
    if meta.get("version") != FACENET_VERSION:
        raise _meta_error(json_path, "version", f"is {meta.get('version')!r}, this runtime reads {FACENET_VERSION}")
    if meta.get("face_model") != face_model.kind:
        raise _meta_error(json_path, "face_model", f"is {meta.get('face_model')!r}, the loaded face model is "
                                                   f"{face_model.kind!r}")
    sig = model_signature(face_model)
    if meta.get("face_model_signature") != sig:
        raise _meta_error(json_path, "face_model_signature", f"is {meta.get('face_model_signature')!r}, the loaded "
                                                             f"face model ({face_model.source or face_model.kind}) "
                                                             f"has {sig}")
    if meta.get("sizes") != face_model.sizes:
        raise _meta_error(json_path, "sizes", f"are {meta.get('sizes')!r}, the face model has {face_model.sizes}")
    for key in ("input_size", "crop_scale", "width", "hidden"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise ModelFileError(json_path, key, f"must be a positive number, got {v!r}")
    if int(meta["input_size"]) % 32:
        raise ModelFileError(json_path, "input_size", f"must be a multiple of 32, got {meta['input_size']}")
    return meta


def load_state(pt_path: Path, net: FaceNetModule) -> None:
    """Load ``pt_path`` (a state dict) into ``net``; any problem is a one-line :class:`ModelFileError`."""
    if not pt_path.is_file():
        raise ModelFileError(pt_path, None, "is missing; train it with 'python -m model_runtime train facenet' "
                                            "or use --face fit")
    try:
        state = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise ModelFileError(pt_path, None, f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
                             ) from None
    if not isinstance(state, dict):
        raise ModelFileError(pt_path, None, f"is not a state dict (got {type(state).__name__})")
    own = net.state_dict()
    for k, v in own.items():
        if k not in state:
            raise ModelFileError(pt_path, k, "is missing")
        got = state[k]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(v.shape):
            raise ModelFileError(pt_path, k, f"has shape {tuple(getattr(got, 'shape', ()))}, expected {tuple(v.shape)}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise ModelFileError(pt_path, k, "contains NaN/inf")
    extra = sorted(set(state) - set(own))
    if extra:
        raise ModelFileError(pt_path, extra[0], "is not a FaceNet parameter")
    net.load_state_dict({k: state[k].to(own[k].dtype) for k in own})


def save_weights(net: FaceNetModule, pt_path: Path, meta: dict) -> None:
    """Write ``net``'s state dict (floats as fp16) to ``pt_path`` and ``meta`` to ``pt_path.with_suffix('.json')``."""
    pt_path = Path(pt_path)
    pt_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in net.state_dict().items()}
    torch.save(state, pt_path)
    pt_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def read_gate(json_path: Path, meta: dict) -> tuple[float, float]:
    """The profile expert's ``gate_yaw_deg`` of its metadata ``meta`` -> ``(lo, hi)`` degrees, checked
    (``0 <= lo < hi <= 90``; a bad field is a one-line :class:`ModelFileError`)."""
    if meta.get("expert") != "profile":
        raise _meta_error(json_path, "expert", f"is {meta.get('expert')!r}, a profile expert's must be 'profile'")
    gate = meta.get("gate_yaw_deg")
    ok = (isinstance(gate, list) and len(gate) == 2 and all(isinstance(g, (int, float)) and not isinstance(g, bool)
                                                             and np.isfinite(g) for g in gate))
    if not ok or not 0.0 <= gate[0] < gate[1] <= 90.0:
        raise ModelFileError(json_path, "gate_yaw_deg",
                             f"must be [lo, hi] degrees with 0 <= lo < hi <= 90, got {gate!r}")
    return float(gate[0]), float(gate[1])


class _Net:
    """One weights file made ready to run: its metadata, the BatchNorm-folded module and its forward."""

    def __init__(self, pt: Path, face_model: FaceModel, device: torch.device, optimise: bool):
        self.meta = read_metadata(pt.with_suffix(".json"), face_model)
        self.module = FaceNetModule(face_model.sizes, expression_box=face_model.kind == "builtin",
                                    input_size=int(self.meta["input_size"]), width=int(self.meta["width"]),
                                    hidden=int(self.meta["hidden"]))
        load_state(pt, self.module)
        self.module.eval()
        fuse_batchnorm(self.module)
        self.module.to(device)
        self.forward = InferenceNet(self.module) if optimise else self.module


class FaceNet:
    """FaceNet for one face model: ``process(crops)`` -> :class:`FaceNetPrediction`.

    ``weights``: the ``.pt`` file (default :func:`weights_path`, the shipped weights); its ``.json``
    is checked against ``face_model`` (:func:`read_metadata`).  ``profile``: the profile expert's ``.pt``
    (module docstring); default (None or True): ``<weights stem>_profile.pt`` beside the weights when it
    exists; False or ``"none"`` (the command-line value): none.  ``device``: torch device (CPU or CUDA).  ``optimise``: run the networks as
    :class:`InferenceNet` (default; False: the plain modules, for comparison).
    """

    def __init__(self, face_model: FaceModel, device: str = "cpu", weights: Path | str | None = None,
                 correspondence=None, optimise: bool = True, profile: Path | str | bool | None = None):
        from .correspondence import correspondence_for

        self.model = face_model
        self.device = torch.device(device)
        pt = Path(weights) if weights is not None else weights_path(face_model)
        main = _Net(pt, face_model, self.device, optimise)
        self.meta, self.net, self._forward = main.meta, main.module, main.forward
        self.input_size = int(self.meta["input_size"])
        self.crop_scale = float(self.meta["crop_scale"])
        self.profile, self.gate = None, None
        if isinstance(profile, str) and profile.strip().lower() == "none":
            profile = False
        if profile is None or profile is True:
            side = pt.with_name(pt.stem + PROFILE_SUFFIX + pt.suffix)
            profile = side if side.with_suffix(".json").is_file() else False
        if profile is not False:
            expert = _Net(Path(profile), face_model, self.device, optimise)
            self.gate = read_gate(Path(profile).with_suffix(".json"), expert.meta)
            for key in ("input_size", "crop_scale"):
                if expert.meta[key] != self.meta[key]:
                    raise ModelFileError(Path(profile).with_suffix(".json"), key, f"is {expert.meta[key]!r}, the main "
                                         f"network's {pt.with_suffix('.json').name} has {self.meta[key]!r}")
            self.profile = expert.forward
        self.corr = correspondence or correspondence_for(face_model)
        self.anchor = face_anchor(face_model, self.corr)
        # the first pass pays oneDNN's kernel set-up (~10 ms): pay it here, not in a clip's first frame
        self.process(np.zeros((1, self.input_size, self.input_size, 3), np.uint8))

    def crops(self, image_bgr: np.ndarray, face_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crops of ``image_bgr (H, W, 3)`` uint8 around ``face_boxes (B, 4)`` -> ``(crops (B, S, S, 3)`` uint8 BGR,
        ``A (B, 2, 3)`` image px -> crop px)."""
        A = crop_affine(crop_box(face_boxes, self.crop_scale), self.input_size)
        return cut_crops(image_bgr, A, self.input_size), A

    @torch.inference_mode()
    def process(self, crops_bgr: np.ndarray) -> FaceNetPrediction:
        """uint8 BGR crops ``(B, S, S, 3)`` (:meth:`crops`) -> the crop-frame prediction (batched, one pass)."""
        crops_bgr = np.asarray(crops_bgr)
        S = self.input_size
        if crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (S, S, 3) or crops_bgr.dtype != np.uint8:
            raise ValueError(f"crops must be (B, {S}, {S}, 3) uint8, got {crops_bgr.shape} {crops_bgr.dtype}")
        if self.profile is None:
            return self._prediction(self._run(self._forward, crops_bgr))
        raw = self._run(self.profile, crops_bgr)                      # the expert's yaw decides
        from ..core.rotations import rot6d_to_matrix

        w = profile_weight(yaw_deg(rot6d_to_matrix(raw[:, :6].astype(np.float64))), self.gate)
        main = np.flatnonzero(w < 1.0)
        if len(main):
            wm = w[main, None].astype(np.float32)
            raw[main] = (1.0 - wm) * self._run(self._forward, crops_bgr[main]) + wm * raw[main]
        return self._prediction(raw, w.astype(np.float32))

    def _run(self, forward, crops_bgr: np.ndarray) -> np.ndarray:
        """One network on uint8 BGR crops -> raw outputs ``(B, D)`` float32 numpy."""
        if isinstance(forward, InferenceNet):
            raw = forward(torch.as_tensor(np.ascontiguousarray(crops_bgr), device=self.device))
        else:
            raw = forward(to_input(crops_bgr, self.device))
        return raw.float().cpu().numpy()

    def _prediction(self, raw: np.ndarray, weight: np.ndarray | None = None) -> FaceNetPrediction:
        """Raw outputs ``(B, D)`` (numpy) -> :class:`FaceNetPrediction` (:meth:`FaceNetModule.split` in numpy)."""
        s, o, out = self.net.sizes, 9, {}
        for k in ("identity", "expression", "albedo", "sh"):
            out[k] = raw[:, o:o + s[k]]
            o += s[k]
        if self.net.expression_box:
            out["expression"] = 1.0 / (1.0 + np.exp(-out["expression"]))
        return FaceNetPrediction(rot6d=raw[:, :6], uv=raw[:, 6:8], log_scale=raw[:, 8], profile_weight=weight, **out)

    def predict(self, image_bgr: np.ndarray, face_boxes: np.ndarray, K: np.ndarray):
        """One image, boxes ``(B, 4)``, camera ``K (3, 3)`` -> ``(prediction, R (B, 3, 3), t (B, 3))``."""
        crops, A = self.crops(image_bgr, face_boxes)
        pred = self.process(crops)
        R, t = pose_in_camera(pred, A, K, self.anchor, self.input_size)
        return pred, R, t
