"""The calibrated MediaPipe landmark -> body keypoint map (assets/mediapipe_body_map.npz)."""
from __future__ import annotations

import numpy as np
import pytest

from model_runtime.core.errors import ModelFileError
from model_runtime.detectors.mediapipe import (
    BODY_FROM_POSE, BODY_MAP_PATH, BODY_MAP_VERSION, BodyMap, body_local_frames,
)
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES

H36M = "mmpose/tests/data/h36m"   # Human3.6M frames and 3D ground truth, under the realdata fixture


def test_asset_loads_with_expected_shapes_and_provenance():
    m = BodyMap.load()
    assert m.weights_2d.shape == m.weights_3d.shape == (24, 33)
    assert m.offsets_3d.shape == (24, 3)
    np.testing.assert_allclose(m.weights_2d.sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose(m.weights_3d.sum(1), 1.0, atol=1e-4)
    assert "HDM05" in m.provenance and "dg excluded" in m.provenance
    with np.load(BODY_MAP_PATH) as z:
        assert int(z["version"]) == BODY_MAP_VERSION
    # calibrated, yet close to the hand-set prior: every keypoint keeps its main landmark
    assert (np.argmax(m.weights_2d, 1) == np.argmax(BODY_FROM_POSE, 1)).mean() >= 0.8
    assert np.abs(m.offsets_3d).max() < 0.15   # metres


def test_bad_asset_names_the_field(tmp_path):
    with np.load(BODY_MAP_PATH) as z:
        d = {k: z[k] for k in z.files}
    bad = tmp_path / "map.npz"
    np.savez(bad, **(d | {"version": np.int32(BODY_MAP_VERSION + 1)}))
    with pytest.raises(ModelFileError, match="'version'"):
        BodyMap.load(bad)
    np.savez(bad, **(d | {"weights_3d": d["weights_3d"][:, :32]}))
    with pytest.raises(ModelFileError, match="'weights_3d'"):
        BodyMap.load(bad)
    with pytest.raises(ModelFileError, match="missing"):
        BodyMap.load(tmp_path / "absent.npz")


def test_local_frames_are_rotations():
    world = np.random.default_rng(0).normal(size=(5, 33, 3))
    R = body_local_frames(world)                                    # (5, 3, 3)
    np.testing.assert_allclose(R.transpose(0, 2, 1) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)


def test_calibrated_map_not_worse_on_real_h36m_frames(realdata):
    """Human3.6M frames (2D px and camera-metre 3D GT): the calibrated map is not worse than the hand-set one.

    2D on the limb joints (knees, ankles, elbows, wrists: defined alike in H36M and SMPL-H;
    H36M's root/hips/shoulders are other points), 3D after a similarity alignment.
    """
    from model_runtime.evals.body3d import _GT_INDEX, SHARED_JOINTS
    from model_runtime.evals.common import mpjpe, procrustes_align, read_image
    from model_runtime.detectors.mediapipe import MediaPipeDetector

    kp = np.array([BODY_KEYPOINT_NAMES.index(n) for n in SHARED_JOINTS])
    limbs = np.array([i for i, n in enumerate(SHARED_JOINTS) if n.endswith(("knee", "ankle", "elbow", "wrist"))])
    z = np.load(realdata / H36M / "test_h36m_body3d.npz")
    gt_idx = list(_GT_INDEX["h36m"])
    calibrated, handset = BodyMap.load(), BodyMap.handset()
    err2 = {"calibrated": [], "handset": []}
    pa3 = {"calibrated": [], "handset": []}
    with MediaPipeDetector(refine_face_landmarks=False) as det:
        for name, part, S in zip(z["imgname"], z["part"], z["S"]):
            d = det.detect(read_image(realdata / H36M / str(name)))
            assert d.person, name
            px, world = d.extras["pose_landmarks_px"], d.extras["pose_world_landmarks"]
            from_pose = np.ones(len(BODY_KEYPOINT_NAMES), bool)
            if d.face_landmarks is not None:      # nose and eyes: the face mesh's (detectors/mediapipe.py)
                from_pose[[BODY_KEYPOINT_NAMES.index(n) for n in ("nose", "left_eye", "right_eye")]] = False
            np.testing.assert_allclose(d.body_2d[from_pose, :2], calibrated.apply_2d(px)[from_pose], atol=1e-3)
            np.testing.assert_allclose(d.body_3d, calibrated.apply_3d(world), atol=1e-5)
            g2, g3 = part[gt_idx, :2], S[gt_idx, :3] - S[gt_idx[0], :3]
            for label, m in (("calibrated", calibrated), ("handset", handset)):
                err2[label].append(np.linalg.norm(m.apply_2d(px)[kp][limbs] - g2[limbs], axis=-1).mean())
                p3 = m.apply_3d(world)[kp].astype(np.float64)
                pa3[label].append(mpjpe(procrustes_align(p3[None], g3[None]), g3[None])[0])
    assert len(err2["calibrated"]) == 4
    c2, h2 = np.mean(err2["calibrated"]), np.mean(err2["handset"])
    c3, h3 = np.mean(pa3["calibrated"]), np.mean(pa3["handset"])
    assert c2 <= h2 + 0.5, f"2D limb error: calibrated {c2:.2f} px vs hand-set {h2:.2f} px"
    assert c3 <= h3 + 0.005, f"3D PA-MPJPE: calibrated {c3 * 1000:.1f} mm vs hand-set {h3 * 1000:.1f} mm"
