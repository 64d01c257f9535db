"""AFLW2000-3D: the MediaPipe detector's face check (a face that disagrees with the pose is re-found by
the standalone Face Mesh on a head crop) on the real AFLW2000 images in ../shared, and its helpers."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from model_runtime.detectors.mediapipe import (
    _MESH_FACE_POINTS, _POSE_FACE_POINTS, FACE_POSE_DISAGREEMENT_MAX, MEDIAPIPE_TO_IBUG68, MediaPipeDetector,
    face_pose_disagreement, head_crop,
)
from model_runtime.evals.aflw2000 import nme_percent, read_annotation

AFLW = "PRNet/TestImages/AFLW2000"


def _iou(a, b) -> float:
    """IoU of two ``(x, y, w, h)`` boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _synthetic_face():
    """A 100 x 100 px "mesh" and pose landmarks placed exactly on its nose, eyes and mouth corners."""
    rng = np.random.default_rng(0)
    face = rng.uniform(0.0, 100.0, (468, 3))
    face[0, :2], face[2, :2] = (0.0, 0.0), (100.0, 100.0)       # box exactly 100 x 100
    pose = np.zeros((33, 4))
    for ix, j in zip(_MESH_FACE_POINTS, _POSE_FACE_POINTS):
        pose[j, :2] = face[list(ix), :2].mean(0)
    return face, pose


def test_face_pose_disagreement_is_in_face_sizes():
    face, pose = _synthetic_face()
    assert face_pose_disagreement(face, pose) == pytest.approx(0.0, abs=1e-9)
    pose[list(_POSE_FACE_POINTS), 0] += 25.0                    # every point a quarter face off
    assert face_pose_disagreement(face, pose) == pytest.approx(0.25)
    assert face_pose_disagreement(face * 2.0, pose * 2.0) == pytest.approx(0.25)   # scale-free


def test_head_crop_is_a_clipped_square_around_face_and_pose():
    face, pose = _synthetic_face()
    pose[:11, :2] = face[:11, :2]
    x0, y0, x1, y1 = head_crop(face + 200.0, pose + 200.0, 1000, 1000)
    assert (x0, y0, x1, y1) == (150, 150, 350, 350)             # side 2 x 100, centred on (250, 250)
    x0, y0, x1, y1 = head_crop(face, pose, 120, 1000)           # clipped to the image
    assert (x0, y0) == (0, 0) and x1 == 120 and y1 == 150


@pytest.fixture(scope="module")
def detectors():
    on, off = MediaPipeDetector(), MediaPipeDetector(face_check=False)
    yield on, off
    on.close()
    off.close()


def _image(realdata, stem):
    path = realdata / AFLW / f"{stem}.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    gt, _ = read_annotation(path.with_suffix(".mat"))
    return cv2.imread(str(path)), gt


def test_face_check_refinds_the_face_holistic_misplaces(detectors, realdata):
    """image00251 (yaw 55, an arm raised behind the head): Holistic's face, placed from the pose,
    disagrees with the pose and misses the face; the face check's Face Mesh finds the real one, whose
    box overlaps the ground-truth landmarks' box."""
    img, gt = _image(realdata, "image00251")
    on, off = detectors
    raw, checked = off.detect(img), on.detect(img)
    assert raw.face_landmarks is not None and "face_source" not in raw.extras
    assert face_pose_disagreement(raw.face_landmarks, raw.extras["pose_landmarks_px"]) > FACE_POSE_DISAGREEMENT_MAX
    assert nme_percent(raw.face_landmarks[MEDIAPIPE_TO_IBUG68, :2], gt) > 20.0
    assert checked.extras["face_source"] == "face_mesh"
    assert checked.extras["face_pose_disagreement"] > FACE_POSE_DISAGREEMENT_MAX
    gt_box = np.r_[gt.min(0), gt.max(0) - gt.min(0)]
    assert _iou(checked.face_box, gt_box) > 0.5
    assert nme_percent(checked.face_landmarks[MEDIAPIPE_TO_IBUG68, :2], gt) < 10.0
    # the replaced face fills every face field consistently
    assert checked.face_landmarks.shape == (468, 3) and checked.extras["iris_landmarks_px"].shape == (10, 3)
    np.testing.assert_allclose(checked.wholebody_2d[23:91, :2], checked.face_landmarks[MEDIAPIPE_TO_IBUG68, :2])
    assert checked.face_conf == 1.0


def test_face_check_keeps_a_consistent_face(detectors, realdata):
    """image00050 (frontal): Holistic's face agrees with the pose, so it is kept unchanged."""
    img, gt = _image(realdata, "image00050")
    on, off = detectors
    raw, checked = off.detect(img), on.detect(img)
    assert checked.extras["face_source"] == "holistic"
    assert checked.extras["face_pose_disagreement"] < FACE_POSE_DISAGREEMENT_MAX
    np.testing.assert_array_equal(checked.face_landmarks, raw.face_landmarks)
    assert nme_percent(checked.face_landmarks[MEDIAPIPE_TO_IBUG68, :2], gt) < 5.0


def test_face_check_drops_a_face_that_face_mesh_cannot_confirm(detectors, realdata):
    """mmhuman3d single_person_demo frame 37: a man bent over, the top of his head to the camera.  Holistic
    puts a mesh on his hair that disagrees with the pose; Face Mesh finds no face in the head crop, so the
    face is dropped and every face field cleared (the body stays)."""
    path = realdata / "mmhuman3d/demo/resources/single_person_demo.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    cap = cv2.VideoCapture(str(path))
    for _ in range(38):
        ok, frame = cap.read()
        assert ok, f"{path}: fewer than 38 frames"
    cap.release()
    on, off = detectors
    raw, checked = off.detect(frame), on.detect(frame)
    assert raw.face_landmarks is not None
    assert face_pose_disagreement(raw.face_landmarks, raw.extras["pose_landmarks_px"]) > FACE_POSE_DISAGREEMENT_MAX
    assert checked.extras["face_source"] == "rejected" and checked.person
    assert checked.face_landmarks is None and checked.face_box is None and checked.face_conf == 0.0
    assert "iris_landmarks_px" not in checked.extras and not checked.wholebody_2d[23:91].any()
    np.testing.assert_array_equal(checked.body_2d, raw.body_2d)


def test_ibug_jaw_follows_its_definition_on_the_mesh_oval():
    """The 68-point jaw (face/landmarks.py): ends at the height of the eye corners on the face-mesh oval (iBUG
    0/16 are at the ear, at eye level; the common table's 162/389 sit at the temples), 8 at the chin, the points
    in order along the oval from one end to the other, spaced evenly (each step 0.5-1.6x the mean), checked on the
    built-in face's mean shape through the shipped MediaPipe correspondence."""
    import mediapipe as mp

    from model_runtime.face.landmarks import MP468_TO_IBUG68
    from model_runtime.face.tracker import FaceTracker
    from model_runtime.models.load import load_face_model

    L = FaceTracker(load_face_model(None))._L0                        # (468, 3) landmark points, Y up
    jaw = MP468_TO_IBUG68[:17]
    eye_y = L[[33, 133, 362, 263], 1].mean()
    eye_to_chin = eye_y - L[152, 1]
    assert jaw[8] == 152
    for end in (jaw[0], jaw[16]):
        assert abs(L[end, 1] - eye_y) < 0.1 * eye_to_chin             # the temples' 162/389 are 0.12 above
    oval = set(i for e in mp.solutions.face_mesh_connections.FACEMESH_FACE_OVAL for i in e)
    assert set(jaw.tolist()) <= oval
    heights = L[jaw, 1]
    assert (np.diff(heights[:9]) < 0).all() and (np.diff(heights[8:]) > 0).all()   # down to the chin and up again
    steps = np.linalg.norm(np.diff(L[jaw], axis=0), axis=1)
    assert steps.min() > 0.5 * steps.mean() and steps.max() < 1.6 * steps.mean()
