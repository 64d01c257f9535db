"""One of each: the similarity alignment and the intrinsics of :mod:`model_runtime.geometry`,
the forward kinematics and rest joints of :mod:`model_runtime.core.lbs` / the body model."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from model_runtime.core import lbs, options
from model_runtime.core.skeleton import BODY_IDX, PARENTS
from model_runtime.geometry import alignment, camera

REPO = Path(__file__).resolve().parents[1]


def _random_similarity(rng, batch):
    R = Rotation.random(int(np.prod(batch)), random_state=rng.integers(1 << 31)).as_matrix().reshape(*batch, 3, 3)
    return R, rng.normal(size=(*batch, 3)), rng.uniform(0.3, 3.0, size=batch)


def _apply(R, t, s, x):
    return s[..., None, None] * np.einsum("...ij,...nj->...ni", R, x) + t[..., None, :]


# ------------------------------------------------------------------ alignment
def test_recovers_a_similarity_batched_with_weights_ignoring_zero_weight_outliers():
    rng = np.random.default_rng(0)
    R, t, s = _random_similarity(rng, (4, 2))
    src = rng.normal(size=(4, 2, 30, 3))
    dst = _apply(R, t, s, src)
    w = rng.uniform(0.1, 2.0, size=(4, 2, 30))
    dst[..., :5, :] += rng.normal(scale=5.0, size=(4, 2, 5, 3))   # outliers, weight 0 below
    w[..., :5] = 0.0
    fit = alignment.fit_similarity(src, dst, w)
    assert fit.R.shape == (4, 2, 3, 3) and fit.t.shape == (4, 2, 3) and fit.scale.shape == (4, 2)
    np.testing.assert_allclose(fit.R, R, atol=1e-10)
    np.testing.assert_allclose(fit.t, t, atol=1e-10)
    np.testing.assert_allclose(fit.scale, s, rtol=1e-10)
    # the stated convention: dst ~= scale * src @ R.T + t
    np.testing.assert_allclose(fit.scale[..., None, None] * src[..., 5:, :] @ np.swapaxes(fit.R, -1, -2)
                               + fit.t[..., None, :], dst[..., 5:, :], atol=1e-9)
    np.testing.assert_allclose(fit.apply(src)[..., 5:, :], dst[..., 5:, :], atol=1e-9)
    M = fit.matrix()
    np.testing.assert_allclose(np.einsum("...ij,...nj->...ni", M[..., :3, :3], src) + M[..., None, :3, 3],
                               fit.apply(src), atol=1e-12)


def test_weights_change_the_least_squares_answer():
    """Noisy data: the weighted fit minimises the *weighted* residual (perturbing it costs)."""
    rng = np.random.default_rng(1)
    src = rng.normal(size=(40, 3))
    dst = 1.7 * src @ Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix().T + 0.4 + rng.normal(scale=0.2, size=(40, 3))
    w = rng.uniform(0.0, 3.0, size=40)
    fit = alignment.fit_similarity(src, dst, w)
    cost = lambda f: float((w * ((f.apply(src) - dst) ** 2).sum(-1)).sum())  # noqa: E731
    best = cost(fit)
    for k in range(20):
        dR = Rotation.from_rotvec(rng.normal(scale=1e-3, size=3)).as_matrix()
        other = alignment.Similarity(dR @ fit.R, fit.t + rng.normal(scale=1e-3, size=3),
                                     fit.scale * (1 + rng.normal(scale=1e-3)))
        assert cost(other) > best
    assert not np.allclose(alignment.fit_similarity(src, dst).R, fit.R, atol=1e-6)


def test_rigid_and_rotation_only_fits():
    rng = np.random.default_rng(2)
    R, t, _ = _random_similarity(rng, (3,))
    src = rng.normal(size=(3, 12, 3))
    rigid = alignment.fit_similarity(src, _apply(R, t, np.ones(3), src), scale=False)
    np.testing.assert_allclose(rigid.R, R, atol=1e-10)
    np.testing.assert_allclose(rigid.t, t, atol=1e-10)
    assert np.all(rigid.scale == 1.0)
    # about the origin: no centring, t = 0 (root-relative points, Kabsch)
    rot = alignment.fit_similarity(src, src @ np.swapaxes(R, -1, -2), scale=False, translation=False)
    np.testing.assert_allclose(rot.R, R, atol=1e-10)
    assert np.all(rot.t == 0.0)


def test_one_source_against_a_batch_of_targets_broadcasts():
    rng = np.random.default_rng(3)
    R, t, s = _random_similarity(rng, (5,))
    src = rng.normal(size=(20, 3))
    fit = alignment.fit_similarity(src, _apply(R, t, s, np.broadcast_to(src, (5, 20, 3))))
    np.testing.assert_allclose(fit.R, R, atol=1e-10)
    np.testing.assert_allclose(fit.scale, s, rtol=1e-10)


@pytest.mark.parametrize("kwargs", [{}, {"scale": False}, {"translation": False}, {"scale": False, "translation": False}])
def test_numpy_and_torch_agree(kwargs):
    rng = np.random.default_rng(4)
    src = rng.normal(size=(6, 25, 3))
    dst = rng.normal(size=(6, 25, 3)) + 0.5 * src @ Rotation.random(random_state=4).as_matrix().T
    w = rng.uniform(0.0, 1.0, size=(6, 25))
    a = alignment.fit_similarity(src, dst, w, **kwargs)
    b = alignment.fit_similarity(torch.tensor(src), torch.tensor(dst), torch.tensor(w), **kwargs)
    assert all(torch.is_tensor(x) for x in b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.numpy(), x, atol=1e-9)
    np.testing.assert_allclose(b.apply(torch.tensor(src)).numpy(), a.apply(src), atol=1e-9)
    # numpy source, torch target: torch result; float32 stays float32
    c = alignment.fit_similarity(src.astype(np.float32), torch.tensor(dst, dtype=torch.float32), **kwargs)
    assert c.R.dtype == torch.float32


def test_torch_fit_is_differentiable():
    src = torch.randn(10, 3, dtype=torch.float64)
    dst = (2.0 * src + 1.0).requires_grad_(True)
    fit = alignment.fit_similarity(src, dst)
    (fit.scale + fit.t.sum() + fit.R.sum()).backward()
    assert torch.isfinite(dst.grad).all() and dst.grad.abs().sum() > 0


def test_degenerate_input_gives_finite_proper_transforms():
    rng = np.random.default_rng(5)
    dst = rng.normal(size=(8, 3))
    for lib in (np.asarray, torch.as_tensor):
        # all weights 0: identity
        fit = alignment.fit_similarity(lib(rng.normal(size=(8, 3))), lib(dst), lib(np.zeros(8)))
        np.testing.assert_array_equal(np.asarray(fit.R), np.eye(3))
        np.testing.assert_array_equal(np.asarray(fit.t), 0.0)
        assert float(fit.scale) == 1.0
        # coinciding source points: R = I, scale 1, centroid to centroid
        src = np.tile([[1.0, 2.0, 3.0]], (8, 1))
        fit = alignment.fit_similarity(lib(src), lib(dst))
        np.testing.assert_array_equal(np.asarray(fit.R), np.eye(3))
        assert float(fit.scale) == 1.0
        np.testing.assert_allclose(np.asarray(fit.t), dst.mean(0) - [1.0, 2.0, 3.0], atol=1e-12)
    # a mirror image is fitted by a rotation, never a reflection
    src = rng.normal(size=(30, 3))
    fit = alignment.fit_similarity(src, src * [-1.0, 1.0, 1.0])
    assert np.linalg.det(fit.R) == pytest.approx(1.0)
    # collinear points: the twist about the line is free, the fit is still exact and proper
    line = np.linspace(-1, 1, 9)[:, None] * np.array([[0.0, 1.0, 0.0]])
    Rq = Rotation.from_rotvec([0.4, 0.1, -0.3]).as_matrix()
    fit = alignment.fit_similarity(line, 2.0 * line @ Rq.T + 0.1)
    assert np.all(np.isfinite(fit.R)) and np.linalg.det(fit.R) == pytest.approx(1.0)
    np.testing.assert_allclose(fit.apply(line), 2.0 * line @ Rq.T + 0.1, atol=1e-10)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., N, 3\)"):
        alignment.fit_similarity(np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="weights"):
        alignment.fit_similarity(np.eye(3), np.eye(3), [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        alignment.fit_similarity(torch.eye(3), torch.eye(3), torch.tensor([1.0, -1.0, 1.0]))


def test_geometry_imports_without_torch_scipy_or_cv2():
    """What Blender's Python can import: numpy only."""
    code = (
        "import sys\n"
        "for m in ('torch', 'scipy', 'cv2', 'roma', 'mediapipe'): sys.modules[m] = None\n"
        "import numpy as np\n"
        "from model_runtime.geometry import alignment, camera\n"
        "from model_runtime.core import lbs, rotations\n"
        "fit = alignment.fit_similarity(np.eye(3), 2 * np.eye(3) + 1)\n"
        "assert abs(float(fit.scale) - 2) < 1e-12\n"
        "assert camera.intrinsics_from_fov((640, 480)).shape == (3, 3)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------ intrinsics
def test_intrinsics_default_is_the_documented_options_default():
    assert camera.DEFAULT_FOV_DEG is options.DEFAULT_FOV_DEG
    assert "DEFAULT_FOV_DEG" in camera.intrinsics_from_fov.__doc__
    K = camera.intrinsics_from_fov((640, 480))
    f = 320.0 / math.tan(math.radians(options.DEFAULT_FOV_DEG) / 2)
    np.testing.assert_allclose(K, [[f, 0, 320], [0, f, 240], [0, 0, 1]])
    np.testing.assert_allclose(camera.intrinsics_from_fov((640, 480), 30.0, focal_px=500.0)[0, 0], 500.0)
    with pytest.raises(ValueError, match="fov"):
        camera.intrinsics_from_fov((640, 480), 0.5)


def test_face_crop_default_is_its_own_documented_constant():
    from model_runtime.face import render

    assert render.FACE_CROP_FOV_DEG == 30.0
    np.testing.assert_array_equal(render.intrinsics(200, 100),
                                  camera.intrinsics_from_fov((200, 100), render.FACE_CROP_FOV_DEG))
    np.testing.assert_array_equal(render.intrinsics(200, 100, focal_px=321.0),
                                  camera.intrinsics_from_fov((200, 100), focal_px=321.0))


def test_capture_translation_uses_the_geometry_intrinsics():
    from model_runtime.capture import translation

    assert translation.intrinsics_from_fov is camera.intrinsics_from_fov
    assert translation.load_calibration is camera.load_calibration


# ------------------------------------------------------------------ one FK, one rest-joints function
def _naive_fk(R, j, parents):
    G, P = np.zeros_like(R), np.zeros_like(j)
    for k, p in enumerate(parents):
        G[:, k] = R[:, k] if p < 0 else G[:, p] @ R[:, k]
        P[:, k] = j[:, k] if p < 0 else P[:, p] + (G[:, p] @ (j[:, k] - j[:, p])[..., None])[..., 0]
    return P, G


def test_forward_kinematics_numpy_torch_and_naive_agree():
    rng = np.random.default_rng(6)
    R = Rotation.random(3 * 52, random_state=6).as_matrix().reshape(3, 52, 3, 3)
    j = rng.normal(size=(3, 52, 3))
    P0, G0 = _naive_fk(R, j, PARENTS)
    P, G, t = lbs.forward_kinematics_rt(R, j, PARENTS)
    np.testing.assert_allclose(P, P0, atol=1e-12)
    np.testing.assert_allclose(G, G0, atol=1e-12)
    np.testing.assert_allclose(t, P - (G @ j[..., None])[..., 0], atol=1e-12)
    Pt, Gt, tt = lbs.forward_kinematics_rt(torch.tensor(R), torch.tensor(j), PARENTS)
    for a, b in ((P, Pt), (G, Gt), (t, tt)):
        np.testing.assert_allclose(b.numpy(), a, atol=1e-12)
    for lib in (np.asarray, torch.as_tensor):
        posed, T = lbs.forward_kinematics(lib(R), lib(j), PARENTS)
        np.testing.assert_allclose(np.asarray(posed), P, atol=1e-12)
        np.testing.assert_allclose(np.asarray(T)[..., :3, :3], G, atol=1e-12)
        np.testing.assert_allclose(np.asarray(T)[..., :3, 3], t, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(T)[..., 3, :], np.broadcast_to([0.0, 0, 0, 1], (3, 52, 4)))


def test_rest_joints_one_function_for_model_keypoints_and_lbs():
    from model_runtime.models.keypoints import PartKinematics
    from model_runtime.models.load import load_body_model

    body = load_body_model()
    betas = np.random.default_rng(7).normal(size=(2, 16))
    rest = body.rest_joints(betas)
    assert rest.shape == (2, 52, 3) and rest.dtype == np.float64
    np.testing.assert_allclose(body.rest_joints(betas[1]), rest[1], atol=1e-14)
    np.testing.assert_array_equal(body.rest_joints(), body.joint_shape_basis()[0])
    ref = lbs.regress_joints(body.J_regressor.astype(np.float64),
                             lbs.shape_blend(body.v_template.astype(np.float64),
                                             body.shapedirs[..., :16].astype(np.float64), betas))
    np.testing.assert_allclose(rest, ref, atol=1e-10)
    kin = PartKinematics(body, "body", dtype=torch.float64)
    np.testing.assert_allclose(kin.rest_joints(torch.tensor(betas)).numpy(), rest[:, BODY_IDX], atol=1e-12)
