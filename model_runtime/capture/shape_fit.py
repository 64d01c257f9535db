"""Per-clip shape (beta) fitted to the image (issue 10, item 1).

BodyIKNet gives a beta per frame from the detector's 3D keypoints, and the clip takes their weighted
median (:class:`~.tracking.ShapeEstimator`); the network predicts beta poorly (``docs/iknet.md``:
``L_beta`` stays at ~0.85 of its prior variance), so the model's limbs come out longer or shorter
than the person's and the image-aligned fit makes up for it with the pose.  Bone lengths in the
image over several frames with different poses are what determine beta.  :func:`fit_clip_shape`,
once per clip on the calibration window (:meth:`~.align_clip.ClipAlignment.calibrate`: up to 12
frames whose torso is seen), refines the first :attr:`ShapeFitConfig.num_betas` components by
minimising, over beta and every frame's pose and translation::

    F(beta) = (1/B) sum_b min_{pose_b, t_b} E_align,b(pose_b, t_b; beta) + s^2 |(beta - beta_ik) / sigma_beta|^2

``E_align,b`` is the image-aligned fit's energy of frame ``b`` (:mod:`.align`: the robust 2D term of
the confident body keypoints, the priors to the IK's pose and to the detector's 3D limb directions,
which are what stop a too-long bone from being hidden by turning it out of the image plane),
``beta_ik`` the IK's clip beta and ``sigma_beta`` the prior's width in beta's own units (the body
model's beta is a unit-variance shape space: BodyIKNet was trained on ``beta ~ N(0, 1)``);
``s = AlignConfig.sigma`` puts the prior in the 2D term's units (a frame's residual of ``s`` per
keypoint is worth one ``sigma_beta``).  The data term is an average over frames, not a sum: a
detector's keypoints differ from the model's joints in the same way from frame to frame
(centimetres: the hips, the ears), so more frames of one person are not more independent evidence
against the prior.  With the sum, beta followed those offsets: on the demo clip (rendered from the
built-in model with known beta) the bone proportions got worse, 2.1 % -> 3.2 % off; with the
average they get better, 2.1 % -> 1.3 % (docs/fidelity.md, "Per-clip shape").

Each step is Gauss-Newton on the reduced problem (variable projection): at the frames' fitted
poses, the aligner's normal equations of each frame's 69 unknowns (translation + 22 body joints,
priors included) are joined with beta's and eliminated by a Schur complement, leaving a
``num_betas x num_betas`` system; then every frame's pose is fitted again with the new beta (from
the IK's pose, as the capture does) and the step is kept only if ``F`` went down (halved up to
twice otherwise).  Holding the poses while solving for beta does not work: the pose absorbs most
of a bone's error, and alternating the two converges over tens of rounds.  For fixed rotations the
keypoints are exactly linear in beta (rest joints ``J0 + Jd beta`` through the joint regressor,
skinned vertices ``v0 + Vd beta``, carried through the same rigid transforms), so their derivatives
``D`` come from one posing per component and are exact.

The scale alpha is a gauge of the image (``alpha X + t`` and ``k alpha X + k t`` project alike), and
so is most of beta's first component (the body's height): the image fixes the skeleton's
proportions, not its size.  The depth anchoring that follows (:meth:`~.align_clip.ClipAlignment.calibrate`)
sets alpha so that the clip keeps Eq. 14's depth with the IK's skeleton.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from ..core.skeleton import NUM_BODY_JOINTS
from ..models.keypoints import NUM_BODY_KP
from .align import AlignFrames, ImageAligner, ModelKeypoints

#: beta components refined (the body model's first components carry most of the skeleton's
#: variation: the joint basis' column norms fall from 0.41 m to ~0.02 m by the tenth)
NUM_FIT_BETAS: Final[int] = 10


@dataclass(frozen=True)
class ShapeFitConfig:
    """Per-clip shape fit (see the module docstring)."""

    num_betas: int = NUM_FIT_BETAS
    sigma_beta: float = 1.0        # prior width around the IK's beta, in beta's units
    rounds: int = 2                # Gauss-Newton steps in beta (each: one pose fit of the frames)
    pose_iterations: int = 10      # LM iterations of each pose fit (fewer: F is not smooth in beta)
    min_confidence: float = 0.5    # body keypoints below this IK confidence are not used
    max_step: float = 1.0          # largest change of a component in one step (beta units)
    tolerance: float = 0.02        # stop when a step changes no component by more than this


@dataclass
class ShapeFit:
    """Result of :func:`fit_clip_shape`: ``betas (16,)`` (the first ``num_betas`` refined),
    ``rot``/``transl`` of the last pose fit (with the refined shape), ``F`` (the module docstring,
    summed over frames) with the IK's beta and with the refined one (both after a pose fit)."""

    betas: np.ndarray
    rot: np.ndarray
    transl: np.ndarray
    energy_before: float
    energy: float


def shape_basis(kp: ModelKeypoints, rot: np.ndarray, nb: int) -> np.ndarray:
    """The exact derivatives ``D (B, 66, 3, nb)`` of the posed model's keypoints in the first ``nb``
    betas (``kp``'s scale included; the keypoints are linear in beta for fixed rotations, so a unit
    step is exact).  ``kp``'s shape is restored."""
    betas, scale = kp.betas.copy(), kp.scale
    zero = np.zeros((len(rot), 3))
    X = kp.pose(rot, zero)[2]
    D = np.empty(X.shape + (nb,))
    try:
        for i in range(nb):
            b = betas.copy()
            b[i] += 1.0
            kp.set_shape(b, scale)
            D[..., i] = kp.pose(rot, zero)[2] - X
    finally:
        kp.set_shape(betas, scale)
    return D


def reduced_step(aligner: ImageAligner, fr: AlignFrames, rot: np.ndarray, transl: np.ndarray, D: np.ndarray,
                 grad_prior: np.ndarray, h_prior: float, frozen: np.ndarray | None = None) -> np.ndarray:
    """One Gauss-Newton step in beta with every frame's pose and translation free (variable
    projection): at the fitted pose, the normal equations of ``[pose_b, t_b]`` (the aligner's own,
    priors included) and beta; the 69 unknowns of each frame are eliminated by a Schur complement.

    Args:
        fr: the frames as the aligner sees them (:class:`~.align.AlignFrames`; hands not used).
        rot, transl: the fitted pose; D ``(B, 66, 3, nb)`` keypoint derivatives in beta.
        grad_prior ``(nb,)`` / h_prior: the beta prior's gradient (half of it) and Hessian (diagonal).
        frozen: ``(B, 52)`` joints held as given, or None.
    Returns ``d_beta (nb,)``.
    """
    _, _, (Hpp, _, _), (gp, _) = aligner.linearise(fr, rot, transl)               # (B, 69, 69), (B, 69, 1)
    J, _, X = aligner.kp.pose(rot, transl)
    u, z = aligner.project(X)
    rows = np.nonzero(fr.c.any(0))[0]
    d = ((u - fr.m) * fr.inv_ppm[:, None, None])[:, rows]                              # metres (B, R, 2)
    s2 = aligner.config.sigma ** 2
    w = fr.c[:, rows] / np.sqrt(1.0 + (d * d).sum(-1) / s2)                          # IRLS (B, R)
    B, R = w.shape
    # the pose's columns as the aligner lays them out: translation, then 3 per body joint
    A, Jp = aligner.body_jacobian(fr, J, X, u, z, rows, np.float64)                  # (B, R, 2, 3), (B, R, 2, 69)
    Jb = A @ D[:, rows]                                                                # (B, R, 2, nb)
    wk = w[..., None, None]
    Hpb = np.einsum("bkri,bkrj->bij", Jp * wk, Jb)                                   # (B, 69, nb)
    Hbb = np.einsum("bkri,bkrj->ij", Jb * wk, Jb)
    gb = np.einsum("bkri,bkr->i", Jb * wk, d)
    if frozen is not None:      # held joints: no increment (identity rows and columns, no coupling)
        mb = np.concatenate([np.ones((B, 3), bool), np.repeat(~frozen[:, :NUM_BODY_JOINTS], 3, 1)], 1)
        Hpp = Hpp * (mb[:, :, None] & mb[:, None, :]) + np.eye(Hpp.shape[-1]) * ~mb[:, None, :]
        Hpb, gp = Hpb * mb[..., None], gp * mb[..., None]
    Hpp = Hpp + 1e-9 * np.eye(Hpp.shape[-1])
    HiHpb = np.linalg.solve(Hpp, Hpb)                                                  # (B, 69, nb)
    Hig = np.linalg.solve(Hpp, gp)                                                     # (B, 69, 1)
    S = Hbb - np.einsum("bji,bjk->ik", Hpb, HiHpb) + h_prior * np.eye(len(gb))
    r = gb - np.einsum("bji,bj->i", Hpb, Hig[..., 0]) + grad_prior
    return -np.linalg.solve(S, r)


def fit_clip_shape(aligner: ImageAligner, rot: np.ndarray, transl: np.ndarray, kp2d: np.ndarray,
                   kp3d: np.ndarray | None, betas: np.ndarray, scale: float,
                   config: ShapeFitConfig | None = None, frozen: np.ndarray | None = None) -> ShapeFit:
    """Refine the clip's beta on calibration frames (see the module docstring).

    Args:
        aligner: the clip's image-aligned fit (its keypoints' shape is left at the result).
        rot: ``(B, 52, 3, 3)`` the IK's rotations; transl ``(B, 3)`` Eq. 14's translations.
        kp2d: ``(B, 66, 3)`` px with the IK's confidences; kp3d ``(B, 66, 3)`` the detector's 3D or None.
        betas: ``(16,)`` the IK's clip beta (the prior's mean and the start); scale: alpha.
        frozen: ``(B, 52)`` joints the pose fits leave as given (unseen: held or neutral), or None.
    """
    cfg = config or ShapeFitConfig()
    kp = aligner.kp
    nb = min(cfg.num_betas, len(betas))
    beta_ik = np.asarray(betas, np.float64).copy()
    kp2d = np.array(kp2d, np.float64)
    kp2d[:, NUM_BODY_KP:, 2] = 0.0                     # body keypoints only (the hands' sizes are the hand detector's)
    kp2d[:, :NUM_BODY_KP, 2] = np.where(kp2d[:, :NUM_BODY_KP, 2] >= cfg.min_confidence, kp2d[:, :NUM_BODY_KP, 2], 0.0)
    # the frames' energies are summed: the prior counts once per frame (the data term's average)
    w_prior = len(rot) * aligner.config.sigma ** 2 / cfg.sigma_beta ** 2

    def evaluate(beta):
        kp.set_shape(beta, scale)
        res = aligner.fit(rot, transl, kp2d, kp3d, frozen=frozen, iterations=cfg.pose_iterations)
        return res, float(res.energy.sum() + w_prior * ((beta[:nb] - beta_ik[:nb]) ** 2).sum())

    beta = beta_ik.copy()
    res, F = evaluate(beta)
    F0 = F
    for _ in range(cfg.rounds):
        D = shape_basis(kp, res.rot, nb)
        fr = AlignFrames(aligner, kp2d, res.transl, rot.copy(), kp3d, None, None, None, None)
        step = reduced_step(aligner, fr, res.rot, res.transl, D, w_prior * (beta[:nb] - beta_ik[:nb]), w_prior,
                            None if frozen is None or not np.any(frozen) else np.asarray(frozen, bool))
        step *= min(1.0, cfg.max_step / max(float(np.abs(step).max()), 1e-12))
        for s in (1.0, 0.5, 0.25):
            b_try = beta.copy()
            b_try[:nb] += s * step
            res_try, F_try = evaluate(b_try)
            if F_try < F:
                beta, res, F = b_try, res_try, F_try
                break
        else:
            break
        if np.abs(step).max() < cfg.tolerance:
            break
    kp.set_shape(beta, scale)
    return ShapeFit(betas=beta, rot=res.rot, transl=res.transl, energy_before=F0, energy=F)
