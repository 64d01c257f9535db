"""Retarget MoCap clips to the SMPL-H body: solve rotations (+ shape and scale) by optimisation.

Pipeline: parsed clip (source node positions, metres) -> map source nodes to
SMPL-H joints (:data:`JOINT_MAPS`, documented in docs/iknet.md) -> solve per
frame the 22 relative body rotations (6D) and a translation, and per source
skeleton (one actor) a shape ``beta (16)`` and scale ``alpha``, minimising

    sum_j w_j |alpha * FK(beta, theta)_j + t - p_j|^2
    + lambda_pose * sum_j |R_j - I|^2 (weak: fixes bone twist, which positions leave free)
    + lambda_beta * |beta|^2 + lambda_smooth * |theta_t - theta_{t-1}|^2

with Adam, batched over all frames of a skeleton at once.  Initialisation:
root rotation by Kabsch on the hips/spine/shoulders, then bones aimed at their
target child level by level (swing only), so lying or upside-down poses start
in the right basin.  Results are cached (``$FULLBODY_CACHE`` or
``~/.cache/fullbody/retarget``), keyed by the clips' bytes, the body model and
the solver settings and the joint maps.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.keypoints import PartKinematics
from ..core.rotations import matrix_to_rot6d, rot6d_to_matrix
from ..core.skeleton import BODY_JOINT_NAMES, NUM_BETAS, PARENTS
from ..geometry import alignment
from .clip import MocapClip

RETARGET_VERSION = 1

# SMPL-H joint -> (source node, weight).  HDM05/ASF nodes are *bone ends*
# (``lfemur`` = the knee); Bandai/BVH nodes are joints.
JOINT_MAPS: dict[str, dict[str, tuple[str, float]]] = {
    "hdm05": {
        "pelvis": ("root", 0.25), "left_hip": ("lhipjoint", 0.5), "right_hip": ("rhipjoint", 0.5),
        "spine1": ("lowerback", 0.1), "spine2": ("upperback", 0.1), "spine3": ("thorax", 0.1),
        "left_knee": ("lfemur", 1.0), "right_knee": ("rfemur", 1.0),
        "left_ankle": ("ltibia", 1.0), "right_ankle": ("rtibia", 1.0),
        "left_foot": ("lfoot", 0.5), "right_foot": ("rfoot", 0.5),
        "neck": ("lowerneck", 0.5), "head": ("upperneck", 0.5),
        "left_shoulder": ("lclavicle", 1.0), "right_shoulder": ("rclavicle", 1.0),
        "left_elbow": ("lhumerus", 1.0), "right_elbow": ("rhumerus", 1.0),
        "left_wrist": ("lradius", 1.0), "right_wrist": ("rradius", 1.0),
    },
    "bandai": {
        "pelvis": ("Hips", 0.5), "left_hip": ("UpperLeg_L", 0.5), "right_hip": ("UpperLeg_R", 0.5),
        "spine2": ("Spine", 0.25), "spine3": ("Chest", 0.25),
        "left_knee": ("LowerLeg_L", 1.0), "right_knee": ("LowerLeg_R", 1.0),
        "left_ankle": ("Foot_L", 1.0), "right_ankle": ("Foot_R", 1.0),
        "left_foot": ("Toes_L", 0.5), "right_foot": ("Toes_R", 0.5),
        "neck": ("Neck", 0.5), "head": ("Head", 0.5),
        "left_collar": ("Shoulder_L", 0.25), "right_collar": ("Shoulder_R", 0.25),
        "left_shoulder": ("UpperArm_L", 1.0), "right_shoulder": ("UpperArm_R", 1.0),
        "left_elbow": ("LowerArm_L", 1.0), "right_elbow": ("LowerArm_R", 1.0),
        "left_wrist": ("Hand_L", 1.0), "right_wrist": ("Hand_R", 1.0),
    },
    # Reallusion CC3 rig (e.g. the CMU-on-iClone BVH set); no clip of it is on disk here
    "cc3": {
        "pelvis": ("CC_Base_Pelvis", 0.5), "left_hip": ("CC_Base_L_Thigh", 0.5), "right_hip": ("CC_Base_R_Thigh", 0.5),
        "spine1": ("CC_Base_Waist", 0.1), "spine2": ("CC_Base_Spine01", 0.1), "spine3": ("CC_Base_Spine02", 0.1),
        "left_knee": ("CC_Base_L_Calf", 1.0), "right_knee": ("CC_Base_R_Calf", 1.0),
        "left_ankle": ("CC_Base_L_Foot", 1.0), "right_ankle": ("CC_Base_R_Foot", 1.0),
        "left_foot": ("CC_Base_L_ToeBase", 0.5), "right_foot": ("CC_Base_R_ToeBase", 0.5),
        "neck": ("CC_Base_NeckTwist01", 0.5), "head": ("CC_Base_Head", 0.5),
        "left_collar": ("CC_Base_L_Clavicle", 0.25), "right_collar": ("CC_Base_R_Clavicle", 0.25),
        "left_shoulder": ("CC_Base_L_Upperarm", 1.0), "right_shoulder": ("CC_Base_R_Upperarm", 1.0),
        "left_elbow": ("CC_Base_L_Forearm", 1.0), "right_elbow": ("CC_Base_R_Forearm", 1.0),
        "left_wrist": ("CC_Base_L_Hand", 1.0), "right_wrist": ("CC_Base_R_Hand", 1.0),
    },
}
# joint -> the joint whose direction it is aimed at during initialisation
_AIM = {
    "left_hip": "left_knee", "right_hip": "right_knee", "left_knee": "left_ankle", "right_knee": "right_ankle",
    "left_ankle": "left_foot", "right_ankle": "right_foot", "spine1": "neck", "neck": "head",
    "left_collar": "left_shoulder", "right_collar": "right_shoulder",
    "left_shoulder": "left_elbow", "right_shoulder": "right_elbow",
    "left_elbow": "left_wrist", "right_elbow": "right_wrist",
}


@dataclass(frozen=True)
class SolverSettings:
    iters: int = 400
    lr: float = 0.03
    lambda_pose: float = 1e-3
    lambda_beta: float = 1e-3
    lambda_smooth: float = 1e-2

    def key(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class Retargeted:
    """SMPL-H body motion of one clip: ``rot6d (F, 22, 6)`` relative rotations,
    ``transl (F, 3)`` root position (metres), ``betas (16,)``, ``scale`` alpha,
    ``fit_mm (F,)`` weighted-mean distance of mapped joints to the source, and
    the clip's path / frame rate."""

    path: str
    fps: float
    rot6d: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    scale: float
    fit_mm: np.ndarray


def detect_source_kind(clip: MocapClip) -> str:
    names = set(clip.node_names)
    for kind, m in JOINT_MAPS.items():
        if all(src in names for src, _ in m.values()):
            return kind
    raise ValueError(f"{clip.path}: unknown source skeleton (nodes {sorted(names)[:8]}...); "
                     f"supported: HDM05/CMU ASF, Bandai Namco BVH, Reallusion CC3 BVH")


def _targets(clip: MocapClip) -> tuple[np.ndarray, np.ndarray]:
    """Target positions ``(F, 22, 3)`` and weights ``(22,)`` (0 where unmapped)."""
    m = JOINT_MAPS[detect_source_kind(clip)]
    P = np.zeros((clip.num_frames, len(BODY_JOINT_NAMES), 3), np.float32)
    w = np.zeros(len(BODY_JOINT_NAMES), np.float32)
    for j, name in enumerate(BODY_JOINT_NAMES):
        if name in m:
            src, wt = m[name]
            P[:, j] = clip.node(src)
            w[j] = wt
    return P, w


def _rotation_between(a, b):
    """Smallest rotation ``(..., 3, 3)`` taking direction ``a`` to ``b`` (``(..., 3)``)."""
    import torch

    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    v = torch.linalg.cross(a, b, dim=-1)
    c = (a * b).sum(-1, keepdim=True)[..., None]
    K = torch.zeros(a.shape[:-1] + (3, 3), dtype=a.dtype)
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K = K - K.transpose(-1, -2)
    eye = torch.eye(3, dtype=a.dtype).expand_as(K)
    return eye + K + K @ K / (1.0 + c).clamp_min(1e-6)


def _initial_rotations(kin: PartKinematics, betas, target, w):
    """Swing-only initial guess ``(F, 22, 3, 3)``: Kabsch root, then aim bones level by level."""
    import torch

    F = target.shape[0]
    idx = {n: i for i, n in enumerate(BODY_JOINT_NAMES)}
    rest = kin.rest_joints(betas[None])[0]
    rest = rest - rest[0]
    tgt = target - target[:, :1]
    R = torch.eye(3).repeat(F, 22, 1, 1)
    torso = [idx[n] for n in ("left_hip", "right_hip", "spine3", "neck", "left_shoulder", "right_shoulder")]
    wt = (w[torso] > 0).to(rest.dtype)
    R[:, 0] = alignment.fit_similarity(rest[torso].expand(F, -1, -1), tgt[:, torso], wt,
                                       scale=False, translation=False).R   # Kabsch about the pelvis
    parents = np.asarray(PARENTS[:22])
    from ..core.skeleton import depth_levels

    for lvl in depth_levels(parents)[1:]:
        js = [int(j) for j in lvl if BODY_JOINT_NAMES[j] in _AIM and w[idx[_AIM[BODY_JOINT_NAMES[j]]]] > 0]
        if not js:
            continue
        aims = [idx[_AIM[BODY_JOINT_NAMES[j]]] for j in js]
        joints, _, G = kin(R, betas.expand(F, -1), with_globals=True)
        cur = joints[:, aims] - joints[:, js]
        want = tgt[:, aims] - tgt[:, js]
        D = _rotation_between(cur, want)                       # global swing
        Gp = G[:, parents[js]]
        R[:, js] = Gp.transpose(-1, -2) @ D @ G[:, js]
    return R


def solve_skeleton(clips: list[MocapClip], kin: PartKinematics, settings: SolverSettings = SolverSettings(),
                   log=None) -> list[Retargeted]:
    """Retarget clips that share one source skeleton (one shape/scale), batched over all frames."""
    import torch

    P_np, w_np = zip(*[_targets(c) for c in clips])
    w = torch.as_tensor(w_np[0])
    P = torch.as_tensor(np.concatenate(P_np))
    F = P.shape[0]
    bounds = np.cumsum([0] + [c.num_frames for c in clips])
    # frames whose successor is in the same clip (for the smoothness term)
    same = torch.ones(F - 1, dtype=torch.bool)
    same[bounds[1:-1] - 1] = False
    with torch.no_grad():
        betas0 = torch.zeros(NUM_BETAS)
        R0 = _initial_rotations(kin, betas0, P, w)
        joints0, _ = kin(R0, betas0.expand(F, -1))
        alpha0 = (((P - P[:, :1]) * joints0).sum((1, 2)) / (joints0 ** 2).sum((1, 2))).median()
    rot6d = matrix_to_rot6d(R0).clone().requires_grad_(True)
    transl = P[:, 0].clone().requires_grad_(True)
    betas = torch.zeros(NUM_BETAS, requires_grad=True)
    log_alpha = torch.log(alpha0).clone().requires_grad_(True)
    opt = torch.optim.Adam([rot6d, transl, betas, log_alpha], lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.iters)
    eye = torch.eye(3)
    for it in range(settings.iters):
        opt.zero_grad(set_to_none=True)
        Rm = rot6d_to_matrix(rot6d)
        joints, _ = kin(Rm, betas.expand(F, -1), log_alpha.exp().expand(F))
        d2 = ((joints + transl[:, None] - P) ** 2).sum(-1)           # (F, 22)
        data = (d2 * w).sum(1).mean() / w.sum()
        pose = ((Rm[:, 1:] - eye) ** 2).sum((-1, -2)).mean()
        smooth = (((rot6d[1:] - rot6d[:-1]) ** 2).sum((-1, -2)) * same).mean()
        loss = data + settings.lambda_pose * pose + settings.lambda_beta * (betas ** 2).mean() + settings.lambda_smooth * smooth
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (it % 100 == 0 or it == settings.iters - 1):
            log(f"  iter {it:4d}  fit {1000 * (data.detach().sqrt()):.1f} mm  pose {pose.item():.3f}")
    with torch.no_grad():
        Rm = rot6d_to_matrix(rot6d)
        joints, _ = kin(Rm, betas.expand(F, -1), log_alpha.exp().expand(F))
        dist = ((joints + transl[:, None] - P).norm(dim=-1) * w).sum(1) / w.sum()
        r6 = matrix_to_rot6d(Rm).numpy()
    out = []
    for c, a, b in zip(clips, bounds[:-1], bounds[1:]):
        out.append(Retargeted(c.path, c.fps, r6[a:b].astype(np.float32), transl.detach()[a:b].numpy().astype(np.float32),
                              betas.detach().numpy().astype(np.float32), float(log_alpha.detach().exp()),
                              (1000 * dist[a:b]).numpy().astype(np.float32)))
    return out


def cache_dir() -> Path:
    d = Path(os.environ.get("FULLBODY_CACHE", Path.home() / ".cache" / "fullbody")) / "retarget"
    d.mkdir(parents=True, exist_ok=True)
    return d


def model_signature(kin: PartKinematics) -> str:
    h = hashlib.sha1()
    for t in (kin.J_template, kin.J_dirs, kin.V_template, kin.V_dirs, kin.V_weights):
        h.update(t.detach().cpu().numpy().astype(np.float32).tobytes())
    return h.hexdigest()[:12]


def _file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha1(fh.read()).hexdigest()


def retarget_clips(clips: list[MocapClip], kin: PartKinematics, settings: SolverSettings = SolverSettings(),
                   log=None) -> list[Retargeted]:
    """Retarget clips (any mix of skeletons; one shape per ``skeleton_id``), with caching.

    Returns one :class:`Retargeted` per clip, in input order.
    """
    import torch

    groups: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        groups.setdefault(c.skeleton_id, []).append(i)
    out: list[Retargeted | None] = [None] * len(clips)
    msig = model_signature(kin)
    for sid, idxs in groups.items():
        jmap = JOINT_MAPS[detect_source_kind(clips[idxs[0]])]
        h = hashlib.sha1(f"{RETARGET_VERSION}|{msig}|{settings.key()}|{sorted(jmap.items())!r}|{sid}".encode())
        for i in idxs:
            h.update(f"|{_file_digest(clips[i].path)}:{clips[i].fps:.3f}:{clips[i].num_frames}".encode())
        f = cache_dir() / f"{h.hexdigest()[:20]}.npz"
        if f.is_file():
            z = np.load(f, allow_pickle=False)
            for k, i in enumerate(idxs):
                out[i] = Retargeted(clips[i].path, clips[i].fps, z[f"rot6d_{k}"], z[f"transl_{k}"], z["betas"],
                                    float(z["scale"]), z[f"fit_{k}"])
            continue
        if log is not None:
            log(f"retargeting {len(idxs)} clips of {sid} ({sum(clips[i].num_frames for i in idxs)} frames)")
        with torch.enable_grad():
            res = solve_skeleton([clips[i] for i in idxs], kin, settings, log)
        arrays = {"betas": res[0].betas, "scale": np.float32(res[0].scale)}
        for k, (i, r) in enumerate(zip(idxs, res)):
            out[i] = r
            arrays.update({f"rot6d_{k}": r.rot6d, f"transl_{k}": r.transl, f"fit_{k}": r.fit_mm})
        tmp = f.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, f)
    return out  # type: ignore[return-value]
