import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from model_runtime.core import rotations as R


@pytest.fixture
def mats():
    return Rotation.random(500, random_state=0).as_matrix()


def test_6d_roundtrip_numpy_and_torch(mats):
    d6 = R.matrix_to_rot6d(mats)
    assert d6.shape == (500, 6)
    # column-major layout: first column then second column
    np.testing.assert_allclose(d6[:, :3], mats[:, :, 0])
    np.testing.assert_allclose(d6[:, 3:], mats[:, :, 1])
    np.testing.assert_allclose(R.rot6d_to_matrix(d6), mats, atol=1e-12)
    t = torch.tensor(d6)
    np.testing.assert_allclose(R.rot6d_to_matrix(t).numpy(), mats, atol=1e-12)


def test_6d_gram_schmidt_of_noisy_input_is_a_rotation():
    x = np.random.default_rng(1).normal(size=(3, 7, 6))
    M = R.rot6d_to_matrix(x)
    assert M.shape == (3, 7, 3, 3)
    np.testing.assert_allclose(M @ np.swapaxes(M, -1, -2), np.broadcast_to(np.eye(3), M.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(M), 1.0, atol=1e-12)


def test_quaternion_matches_scipy_wxyz(mats):
    q = R.matrix_to_quat_wxyz(mats)
    ref = R.xyzw_to_wxyz(Rotation.from_matrix(mats).as_quat())
    ref = ref * np.sign(ref[:, :1])
    np.testing.assert_allclose(q, ref, atol=1e-10)
    np.testing.assert_allclose(R.quat_wxyz_to_matrix(q), mats, atol=1e-10)
    np.testing.assert_allclose(R.wxyz_to_xyzw(q)[:, 3], q[:, 0])


def test_quaternion_near_180_degrees_is_stable():
    aa = np.array([[np.pi - 1e-7, 0, 0], [0, np.pi, 0], [0, 0, -np.pi + 1e-9]])
    M = R.axis_angle_to_matrix(aa)
    np.testing.assert_allclose(R.quat_wxyz_to_matrix(R.matrix_to_quat_wxyz(M)), M, atol=1e-7)


def test_axis_angle_roundtrip_and_gradients(mats):
    aa = R.matrix_to_axis_angle(mats)
    np.testing.assert_allclose(Rotation.from_rotvec(aa).as_matrix(), mats, atol=1e-9)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(R.rot6d_to_matrix, (x,))


def test_quat_continuity_flips_sign_cumulatively():
    q = R.matrix_to_quat_wxyz(Rotation.from_euler("y", np.linspace(0, 6, 50)[:, None]).as_matrix())
    q[::3] *= -1
    fixed = R.quat_continuity(q)
    assert np.all((fixed[1:] * fixed[:-1]).sum(-1) > 0)
    np.testing.assert_allclose(R.quat_wxyz_to_matrix(fixed), R.quat_wxyz_to_matrix(q), atol=1e-12)


def test_geodesic_angle():
    a = Rotation.from_euler("z", 0.3).as_matrix()
    b = Rotation.from_euler("z", 1.0).as_matrix()
    assert R.geodesic_angle(a, b) == pytest.approx(0.7)


def test_quat_continuity_single_frame_and_torch():
    q = R.matrix_to_quat_wxyz(Rotation.random(1, random_state=2).as_matrix())
    np.testing.assert_allclose(R.quat_continuity(q), q)
    qt = torch.tensor(np.stack([q[0], -q[0], q[0]]))
    out = R.quat_continuity(qt)
    assert out.shape == (3, 4) and bool(((out[1:] * out[:-1]).sum(-1) > 0).all())
