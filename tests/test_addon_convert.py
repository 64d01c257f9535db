"""Pure-numpy parts of the add-on: axis matrices and pose_6d -> bone channels."""
from __future__ import annotations

import numpy as np

from fullbody_addon import axes, convert
from fullbody_addon.avatar_data import bone_tails
from model_runtime.core import rotations
from model_runtime.core.skeleton import JOINT_NAMES, PARENTS


def test_axis_matrices_are_proper_rotations_and_documented_mappings():
    for M in (axes.MODEL_TO_BLENDER, axes.CAMERA_TO_BLENDER):
        np.testing.assert_allclose(M @ M.T, np.eye(3))
        assert np.isclose(np.linalg.det(M), 1.0)
    # model up (+Y) is Blender up (+Z); the model's front (+Z) looks along Blender -Y
    np.testing.assert_allclose(axes.model_points_to_blender([0, 1, 0]), [0, 0, 1])
    np.testing.assert_allclose(axes.model_points_to_blender([0, 0, 1]), [0, -1, 0])
    # camera down (+y) is Blender -Z; camera forward (+z) is Blender +Y
    np.testing.assert_allclose(axes.camera_points_to_blender([0, 1, 0]), [0, 0, -1])
    np.testing.assert_allclose(axes.camera_points_to_blender([0, 0, 1]), [0, 1, 0])


def test_person_facing_the_camera_in_rest_pose_gives_identity_bone_rotations():
    T, J = 3, 52
    R = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
    R[:, 0] = np.diag([1.0, -1.0, -1.0])                  # upright, facing the camera
    rng = np.random.default_rng(0)
    bone_rest = rotations.axis_angle_to_matrix(rng.normal(size=(J, 3)))   # any bone orientations
    q = convert.local_rotations(rotations.matrix_to_rot6d(R), bone_rest)
    np.testing.assert_allclose(q, np.broadcast_to(np.eye(3), q.shape), atol=1e-12)


def test_local_rotation_is_the_model_rotation_seen_in_the_bone_frame():
    rng = np.random.default_rng(1)
    R = rotations.axis_angle_to_matrix(rng.normal(size=(5, 52, 3)))
    B = rotations.axis_angle_to_matrix(rng.normal(size=(52, 3)))
    L = convert.local_rotations(rotations.matrix_to_rot6d(R), B)
    A, W = axes.MODEL_TO_BLENDER, axes.CAMERA_TO_BLENDER
    # re-expressing L in armature axes must give the relative rotation in Blender axes
    np.testing.assert_allclose(B[None, 1:] @ L[:, 1:] @ np.swapaxes(B, -1, -2)[None, 1:], A @ R[:, 1:] @ A.T,
                               atol=1e-12)
    np.testing.assert_allclose(B[0] @ L[:, 0] @ B[0].T, W @ R[:, 0] @ A.T, atol=1e-12)


def test_root_location_puts_the_root_joint_at_the_captured_translation():
    rest_root_model = np.array([0.0, 0.9, 0.05])
    head = axes.model_points_to_blender(rest_root_model)
    B = rotations.axis_angle_to_matrix(np.array([0.3, -0.2, 0.5]))
    transl = np.array([[0.2, -0.1, 3.0], [0.0, 0.0, 2.0]])
    loc = convert.root_locations(transl, rest_root_model, head, B, scale=2.0)
    # bone head in armature space after moving by loc (in bone frame) == W(J_r + t/s)
    moved = head + loc @ B.T
    np.testing.assert_allclose(moved, axes.camera_points_to_blender(rest_root_model + transl / 2.0), atol=1e-12)


def test_channels_are_sign_continuous_and_in_place_option_zeroes_location():
    rng = np.random.default_rng(2)
    aa = np.cumsum(rng.normal(scale=0.3, size=(40, 52, 3)), axis=0)
    d6 = rotations.matrix_to_rot6d(rotations.axis_angle_to_matrix(aa))
    ch = convert.bone_channels(d6, np.ones((40, 3)), np.broadcast_to(np.eye(3), (52, 3, 3)), np.zeros(3),
                               np.zeros(3), root_translation=False)
    assert ch.quaternions.shape == (40, 52, 4) and ch.root_location.shape == (40, 3)
    assert ((ch.quaternions[1:] * ch.quaternions[:-1]).sum(-1) >= 0).all()
    assert not ch.root_location.any()


def test_bone_tails_point_at_children_and_never_collapse():
    heads = np.random.default_rng(3).normal(size=(52, 3))
    heads[5] = heads[2]                                   # a zero-length parent -> child bone
    tails = bone_tails(heads, PARENTS, JOINT_NAMES)
    length = np.linalg.norm(tails - heads, axis=-1)
    assert (length >= 0.01 - 1e-9).all()
    spine3, neck = JOINT_NAMES.index("spine3"), JOINT_NAMES.index("neck")
    np.testing.assert_allclose(tails[spine3], heads[neck])
