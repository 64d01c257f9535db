"""Runtime API of the IK networks, used by the capture pipeline.

>>> ik = IKSolver("cpu")
>>> body = ik.solve_body(kp3d, conf)     # kp3d (B, 24, 3), conf (B, 24)
>>> body["rot6d"].shape, body["betas"].shape, body["scale"].shape
((B, 22, 6), (B, 16), (B,))
>>> ik.solve_hands(hand_kp, hand_conf).shape   # (B, 2, 21, 3), (B, 2, 21); [:, 0] left, [:, 1] right
(B, 2, 15, 6)

Inputs may be numpy or torch, in any frame (model space Y-up, or camera space
y-down); outputs are numpy if the input was numpy.  The body root rotation is
the global orientation in the keypoints' frame.  Keypoints with ``conf == 0``
are ignored (legs out of view, a failed hand detection: the nets fall back on
their learned prior).  Left hands are mirrored to right hands (see
:mod:`.inputs`) so one HandIKNet serves both.  Rotations are returned as
orthonormal 6D (first two columns, column after column).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputUnreadableError
from ..core.rotations import matrix_to_rot6d, rot6d_to_matrix
from .inputs import body_input, hand_input, mirror_points, mirror_rotations
from .networks import two_stage_body
from .numpy_path import NumpyIK
from .refine import refine_limbs
from .train import WEIGHTS_DIR, load_net


def _check(t, name: str, shape: tuple, finite) -> None:
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
        raise InputUnreadableError(f"IKSolver: '{name}' has shape {tuple(t.shape)}, expected {want}")
    if not finite(t).all():
        raise InputUnreadableError(f"IKSolver: '{name}' contains NaN/inf (zero the confidence of missing points instead)")


def _as_tensor(x, name: str, shape: tuple, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32, device=device)
    _check(t, name, shape, torch.isfinite)
    return t


def _as_array(x, name: str, shape: tuple) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    _check(a, name, shape, np.isfinite)
    return a


class IKSolver:
    """BodyIKNet + HandIKNet with the shipped weights (``model_runtime/ik/weights``).

    On the CPU, numpy inputs of at most ``numpy_max_batch`` frames go through
    :mod:`.numpy_path` (the same maths without torch's per-operation overhead:
    ~4x faster at batch 1); torch inputs and larger batches use the torch modules.
    Like torch's thread count, numpy's BLAS pool should be capped by the application on a
    busy CPU (the capture pipeline does, ``core.blas.limit_numpy_blas_threads``): a 512x512
    product handed to 2 OpenBLAS threads waits milliseconds for a core that is busy elsewhere.
    """

    def __init__(self, device: str | torch.device = "cpu", weights_dir: Path | str = WEIGHTS_DIR,
                 body_model=None, refine: bool = True, correct: bool | None = None, numpy_max_batch: int = 16):
        """``refine``: apply :func:`.refine.refine_limbs` after the body network(s).
        ``correct``: run the second stage :class:`.networks.BodyCorrectionNet` after BodyIKNet
        (``None``: when ``correction.pt`` is in ``weights_dir``).  Both need the body model the weights
        were trained for (default: the built-in one).  ``numpy_max_batch``: largest numpy batch
        served by :mod:`.numpy_path` on the CPU (0 turns it off)."""
        weights_dir = Path(weights_dir)
        self.device = torch.device(device)
        self.refine = refine
        self.body_net, self.body_info = load_net("body", weights_dir, self.device)
        self.hand_net, self.hand_info = load_net("hand", weights_dir, self.device)
        if correct is None:
            correct = (weights_dir / "correction.pt").is_file()
        self.correction_net, self.correction_info = (load_net("correction", weights_dir, self.device) if correct
                                                     else (None, None))
        self.kin = None
        if refine or correct:
            from ..models.load import load_body_model
            from ..models.keypoints import PartKinematics

            self.kin = PartKinematics(body_model or load_body_model(), "body", device=self.device)
        for net in (self.body_net, self.hand_net, self.correction_net):
            if net is not None:
                net.requires_grad_(False)
        self.numpy_max_batch = numpy_max_batch if self.device.type == "cpu" else 0
        self._np = (NumpyIK(self.body_net, self.hand_net, self.kin, self.correction_net, refine)
                    if self.numpy_max_batch else None)

    def _numpy_path(self, kp3d) -> bool:
        if self._np is None or torch.is_tensor(kp3d):
            return False
        shape = np.shape(kp3d)
        return len(shape) > 0 and 0 < shape[0] <= self.numpy_max_batch

    def solve_body(self, kp3d, conf) -> dict:
        """kp3d ``(B, 24, 3)`` (BODY_KEYPOINT_NAMES order, metres), conf ``(B, 24)`` ->
        ``rot6d (B, 22, 6)``, ``betas (B, 16)``, ``scale (B,)``."""
        if self._numpy_path(kp3d):        # no torch at all (entering inference_mode alone costs ~20 us)
            kp = _as_array(kp3d, "kp3d", (None, 24, 3))
            return self._np.solve_body(kp, _as_array(conf, "conf", (kp.shape[0], 24)))
        return self._solve_body_torch(kp3d, conf)

    @torch.inference_mode()
    def _solve_body_torch(self, kp3d, conf) -> dict:
        numpy_out = not torch.is_tensor(kp3d)
        kp = _as_tensor(kp3d, "kp3d", (None, 24, 3), self.device)
        c = _as_tensor(conf, "conf", (kp.shape[0], 24), self.device)
        rel, c, frame = body_input(kp, c)                 # pelvis-relative, in the body frame
        if self.correction_net is None:
            out = self.body_net(rel, c, frame)
        else:
            out = two_stage_body(self.body_net, self.correction_net, self.kin, rel, c, frame)
        R = rot6d_to_matrix(out["rot6d"])
        if self.refine:
            R = refine_limbs(self.kin, R, out["betas"], out["scale"], rel @ frame.transpose(1, 2), c)
        res = {"rot6d": matrix_to_rot6d(R), "betas": out["betas"], "scale": out["scale"]}
        return {k: v.cpu().numpy() for k, v in res.items()} if numpy_out else res

    def solve_hands_full(self, kp3d, conf) -> dict:
        """kp3d ``(B, 2, 21, 3)`` (HAND21 order; ``[:, 0]`` left, ``[:, 1]`` right), conf ``(B, 2, 21)`` ->
        ``rot6d (B, 2, 15, 6)`` SMPL-H finger joints (relative) and ``wrist_global (B, 2, 3, 3)``: each
        wrist's rotation in the keypoints' frame (the pipeline turns it into the wrist's relative
        rotation once the body is known)."""
        if self._numpy_path(kp3d):
            kp = _as_array(kp3d, "kp3d", (None, 2, 21, 3))
            return self._np.solve_hands_full(kp, _as_array(conf, "conf", (kp.shape[0], 2, 21)))
        return self._solve_hands_torch(kp3d, conf)

    @torch.inference_mode()
    def _solve_hands_torch(self, kp3d, conf) -> dict:
        numpy_out = not torch.is_tensor(kp3d)
        kp = _as_tensor(kp3d, "kp3d", (None, 2, 21, 3), self.device)
        B = kp.shape[0]
        c = _as_tensor(conf, "conf", (B, 2, 21), self.device)
        kp = torch.cat([mirror_points(kp[:, 0]), kp[:, 1]], 0)          # (2B, 21, 3): mirrored lefts, rights
        x, cc, _ = hand_input(kp, c.transpose(0, 1).reshape(2 * B, 21))
        R = rot6d_to_matrix(self.hand_net(x, cc)["rot6d"])               # (2B, 16, 3, 3)
        R = torch.cat([mirror_rotations(R[:B]), R[B:]], 0).reshape(2, B, 16, 3, 3).transpose(0, 1)
        res = {"rot6d": matrix_to_rot6d(R[:, :, 1:]), "wrist_global": R[:, :, 0]}
        return {k: v.cpu().numpy() for k, v in res.items()} if numpy_out else res

    def solve_hands(self, kp3d, conf):
        """kp3d ``(B, 2, 21, 3)``, conf ``(B, 2, 21)`` -> finger rotations ``rot6d (B, 2, 15, 6)``."""
        return self.solve_hands_full(kp3d, conf)["rot6d"]
