"""Training data for the IK nets: real MoCap poses (body) and the hand prior, with augmentation.

Body poses come from ``<data>/mocap`` (HDM05 ASF/AMC and Bandai Namco BVH),
retargeted to SMPL-H once and cached (:mod:`model_runtime.mocap.retarget`).
HDM05 actor ``dg`` is **held out** for evaluation (HDM05 ``tr`` is not on disk:
the data owners held it aside).  Augmentation (paper: "as in [110]"): random
shape beta and scale alpha, random global rotation, keypoint noise, and
dropped keypoints with a confidence input.

Every random draw goes through one ``torch.Generator`` so a run is
deterministic for a seed and resumable (the generator state is checkpointed).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputMissingError
from ..models.keypoints import PartKinematics
from ..core.rotations import axis_angle_to_matrix, rot6d_to_matrix
from ..core.skeleton import BODY_JOINT_NAMES, BODY_KEYPOINT_NAMES, HAND21_NAMES
from .hand_prior import anatomical_axes, fit_hand_poses, load_hgc_hands, random_rotations, sample_limited_poses
from .inputs import body_input, hand_input

HELD_OUT_ACTOR = "dg"
HEAD = BODY_JOINT_NAMES.index("head")
TOES = [BODY_JOINT_NAMES.index("left_foot"), BODY_JOINT_NAMES.index("right_foot")]
BODY_FPS = {"amc": 30.0, "bvh": 15.0}


def default_data_root() -> Path:
    """``$FULLBODY_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("FULLBODY_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def mocap_clip_paths(data_root: Path, split: str) -> list[Path]:
    """``split="train"``: HDM05 clips of every actor but ``dg`` + all Bandai BVH;
    ``split="heldout"``: HDM05 clips of actor ``dg``."""
    root = Path(data_root) / "mocap"
    if not root.is_dir():
        raise InputMissingError(f"{root}: MoCap data folder not found")
    amc = sorted(p for p in (root / "hdm05").rglob("*") if p.suffix.lower() == ".amc")
    held = [p for p in amc if p.name.startswith(f"HDM_{HELD_OUT_ACTOR}_")]
    if split == "heldout":
        return held
    if split != "train":
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    bvh = sorted((root / "bandai_namco").rglob("*.bvh"))
    return [p for p in amc if p not in held] + bvh


def load_clip(path: Path, asf: Path | None = None):
    from ..mocap.asf_amc import load_amc_clip
    from ..mocap.bvh import load_bvh_clip

    if path.suffix.lower() == ".amc":
        return load_amc_clip(path, asf)
    if path.suffix.lower() == ".bvh":
        return load_bvh_clip(path)
    raise InputMissingError(f"{path}: not an .amc or .bvh file")


def load_body_poses(kin: PartKinematics, paths: list[Path], log=None) -> torch.Tensor:
    """Retargeted body rotations of all frames ``(N, 22, 3, 3)`` (cached retargeting)."""
    from ..mocap.retarget import retarget_clips

    clips = []
    for p in paths:
        c = load_clip(p)
        clips.append(c.subsample(BODY_FPS[c.fmt]))
    res = retarget_clips(clips, kin, log=log)
    rot6d = np.concatenate([r.rot6d for r in res])
    return rot6d_to_matrix(torch.as_tensor(rot6d))


@dataclass
class Batch:
    """One training batch.  ``kp (B, K, 3)`` / ``conf (B, K)`` = net input;
    ``rot (B, R, 3, 3)`` target rotations; ``kp_clean (B, K, 3)`` noiseless
    root-relative keypoints; body only: ``betas (B, 16)``, ``scale (B,)``,
    ``kp_rest (B, K, 3)`` keypoints at the reference pose, ``frame (B, 3, 3)``
    the body frame the input is expressed in; hand only: ``size (B,)`` the
    hand size the input was divided by."""

    kp: torch.Tensor
    conf: torch.Tensor
    rot: torch.Tensor
    kp_clean: torch.Tensor
    betas: torch.Tensor
    scale: torch.Tensor | None = None
    kp_rest: torch.Tensor | None = None
    size: torch.Tensor | None = None
    frame: torch.Tensor | None = None

    def to(self, device) -> "Batch":
        return Batch(**{k: (None if v is None else v.to(device)) for k, v in self.__dict__.items()})


def _axis_rotation(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    return axis_angle_to_matrix(axis * angle[..., None])


def _noise_and_dropout(kp: torch.Tensor, gen: torch.Generator, sigma_max: float, groups: list[list[int]],
                       p_group: float, p_point_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoint noise that the confidence input explains, and dropped keypoints.

    Half of the samples are precise (confidence 1, noise at most ``sigma_max / 8``); the other
    half get per-keypoint confidences in (0.5, 1] and noise ``sigma_max * 2 * (1 - conf)``, so
    a keypoint given with low confidence is trusted less and a confident one is fitted closely.
    Dropped keypoints: random points (rate up to ``p_point_max`` on half the samples) and whole
    ``groups`` (each with probability ``p_group``) get confidence 0.
    """
    B, K, _ = kp.shape
    noisy = torch.rand(B, 1, generator=gen) < 0.5
    conf = torch.where(noisy, 1.0 - 0.5 * torch.rand(B, K, generator=gen), torch.ones(B, K))
    floor = sigma_max / 8 * torch.rand(B, 1, generator=gen)
    sigma = floor + sigma_max * 2.0 * (1.0 - conf)
    kp = kp + torch.randn(B, K, 3, generator=gen) * sigma[..., None]
    p_point = p_point_max * torch.rand(B, 1, generator=gen) * (torch.rand(B, 1, generator=gen) < 0.5)
    drop = torch.rand(B, K, generator=gen) < p_point
    for g in groups:
        drop[:, g] |= (torch.rand(B, 1, generator=gen) < p_group)
    return kp, conf * (~drop)


_BODY_NAME = {n: i for i, n in enumerate(BODY_KEYPOINT_NAMES)}
BODY_DROP_GROUPS = [
    [_BODY_NAME[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
                             "left_big_toe", "right_big_toe")],                       # legs out of view
    [_BODY_NAME[n] for n in ("left_ankle", "right_ankle", "left_heel", "right_heel", "left_big_toe", "right_big_toe")],
    [_BODY_NAME[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")],  # face
    [_BODY_NAME[n] for n in ("left_elbow", "left_wrist")],
    [_BODY_NAME[n] for n in ("right_elbow", "right_wrist")],
]
HAND_DROP_GROUPS = [[HAND21_NAMES.index(f"{f}{i}") for i in range(1, 5)]
                    for f in ("thumb", "index", "middle", "ring", "pinky")]


class BodySampler:
    """Random batches for BodyIKNet from retargeted MoCap rotations ``(N, 22, 3, 3)``.

    Global rotation: uniform yaw about +Y and a tilt ~ N(0, 20 deg) about a
    horizontal axis; half of the samples are then turned into camera
    coordinates (180 deg about X: x right, y down, z forward), so the net takes
    keypoints in model space or in camera space.

    Joints the source skeletons do not observe (the head's rotation: Bandai has
    no head end, HDM05's is not mapped; the toe joints ``left_foot`` /
    ``right_foot``) get random rotations: head yaw/pitch/roll ~ N(0, 25/15/8
    deg), toe pitch ~ N(0, 10 deg), so the face and toe keypoints vary.
    """

    def __init__(self, poses: torch.Tensor, kin: PartKinematics, beta_std: float = 1.0,
                 scale_range: tuple[float, float] = (0.9, 1.1), sigma_max: float = 0.02):
        self.poses, self.kin = poses, kin
        self.beta_std, self.scale_range, self.sigma_max = beta_std, scale_range, sigma_max

    def sample(self, B: int, gen: torch.Generator) -> Batch:
        rot = self.poses[torch.randint(len(self.poses), (B,), generator=gen)].clone()
        ex, ey, ez = torch.eye(3)
        head = (_axis_rotation(ey.expand(B, 3), math.radians(25.0) * torch.randn(B, generator=gen))
                @ _axis_rotation(ex.expand(B, 3), math.radians(15.0) * torch.randn(B, generator=gen))
                @ _axis_rotation(ez.expand(B, 3), math.radians(8.0) * torch.randn(B, generator=gen)))
        rot[:, HEAD] = head @ rot[:, HEAD]
        rot[:, TOES] = _axis_rotation(ex.expand(B, 2, 3), math.radians(10.0) * torch.randn(B, 2, generator=gen)) @ rot[:, TOES]
        betas = (torch.randn(B, 16, generator=gen) * self.beta_std).clamp(-2.5 * self.beta_std, 2.5 * self.beta_std)
        lo, hi = self.scale_range
        scale = lo + (hi - lo) * torch.rand(B, generator=gen)
        yaw = _axis_rotation(torch.tensor([0.0, 1.0, 0.0]).expand(B, 3), 2 * math.pi * torch.rand(B, generator=gen))
        phi = 2 * math.pi * torch.rand(B, generator=gen)
        tilt_axis = torch.stack([phi.cos(), torch.zeros(B), phi.sin()], -1)
        tilt = _axis_rotation(tilt_axis, math.radians(20.0) * torch.randn(B, generator=gen))
        cam = torch.rand(B, generator=gen) < 0.5
        flip = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
        G = tilt @ yaw
        G = torch.where(cam[:, None, None], flip @ G, G)
        rot[:, 0] = G @ rot[:, 0]
        with torch.no_grad():
            _, kp_clean = self.kin(rot, betas, scale)
            _, kp_rest = self.kin(torch.eye(3).expand(B, 22, 3, 3), betas, scale)
        kp, conf = _noise_and_dropout(kp_clean, gen, self.sigma_max, BODY_DROP_GROUPS, 0.08, 0.15)
        kp, conf, frame = body_input(kp, conf)
        return Batch(kp, conf, rot, kp_clean, betas, scale, kp_rest, frame=frame)


class HandSampler:
    """Random batches for HandIKNet (right hands) from the hand prior (see :mod:`.hand_prior`)."""

    def __init__(self, real_rot: torch.Tensor, kin: PartKinematics, p_real: float = 0.3, beta_std: float = 1.0,
                 sigma_max: float = 0.004):
        self.real = real_rot          # (M, 15, 3, 3) fitted real finger poses
        self.kin, self.p_real, self.beta_std, self.sigma_max = kin, p_real, beta_std, sigma_max
        self.axes = anatomical_axes(kin)

    def sample(self, B: int, gen: torch.Generator) -> Batch:
        fingers = sample_limited_poses(B, self.axes, gen)
        real = self.real[torch.randint(len(self.real), (B,), generator=gen)]
        jitter = axis_angle_to_matrix(math.radians(5.0) * torch.randn(B, 15, 3, generator=gen))
        use_real = (torch.rand(B, generator=gen) < self.p_real)[:, None, None, None]
        fingers = torch.where(use_real, real @ jitter, fingers)
        rot = torch.cat([random_rotations(B, gen)[:, None], fingers], 1)
        betas = (torch.randn(B, 16, generator=gen) * self.beta_std).clamp(-2.5 * self.beta_std, 2.5 * self.beta_std)
        with torch.no_grad():
            _, kp_clean = self.kin(rot, betas)
        kp, conf = _noise_and_dropout(kp_clean, gen, self.sigma_max, HAND_DROP_GROUPS, 0.05, 0.15)
        kp, conf, size = hand_input(kp, conf)
        return Batch(kp, conf, rot, kp_clean, betas, size=size)


def load_hand_prior(kin: PartKinematics, data_root: Path, log=None) -> torch.Tensor:
    """Fitted real finger poses ``(M, 15, 3, 3)`` from hand-graph-cnn (cached)."""
    import hashlib

    from ..mocap.retarget import cache_dir, model_signature

    kp = load_hgc_hands(data_root)
    key = hashlib.sha1(kp.tobytes() + model_signature(kin).encode() + b"v1").hexdigest()[:20]
    f = cache_dir() / f"hand_{key}.npz"
    if f.is_file():
        rot6d = np.load(f)["rot6d"]
    else:
        rot6d, err = fit_hand_poses(kp, kin)
        if log:
            log(f"fitted {len(kp)} real hands: mean {err.mean():.1f} mm, max {err.max():.1f} mm")
        np.savez_compressed(f, rot6d=rot6d, err=err)
    return rot6d_to_matrix(torch.as_tensor(rot6d[:, 1:]))
