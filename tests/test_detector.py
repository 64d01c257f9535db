"""The keypoint detector interface and its real MediaPipe backend on real images from ../shared."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from model_runtime.core.errors import ModelFileError
from model_runtime.detectors import Detection, Detector, make_detector
from model_runtime.detectors.mediapipe import (
    BODY_FROM_POSE, HAND_PALM_LENGTH_M, MEDIAPIPE_TO_IBUG68, _pose_model_path,
)
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES

COCO_WB = "mmpose/tests/data/coco"
PANOPTIC = "mmpose/tests/data/panoptic"
HGC_IMAGES = "hand-graph-cnn/data/real_world_testset/images"
WB_FIELDS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


@pytest.fixture(scope="module")
def detector():
    det = make_detector("mediapipe")
    yield det
    det.close()


def _wholebody_gt(ann: dict) -> np.ndarray:
    return np.concatenate([np.asarray(ann[k], np.float64).reshape(-1, 3) for k in WB_FIELDS])


def _panoptic(realdata, stem: str):
    """Image and GT of one Panoptic hand-DB image: {side: (21, 3)} per the _l/_r annotation files."""
    data = json.loads((realdata / PANOPTIC / "test_panoptic.json").read_text())
    ids = {img["id"]: img["file_name"] for img in data["images"]}
    gt = {}
    for ann in data["annotations"]:
        name = ids[ann["image_id"]]
        if name.startswith(stem):
            gt["left" if name.endswith("_l.jpg") else "right"] = (
                np.asarray(ann["keypoints"], np.float64).reshape(21, 3), ann["bbox"])
    return cv2.imread(str(realdata / PANOPTIC / f"{stem}_l.jpg")), gt


def test_mappings_are_well_formed():
    assert BODY_FROM_POSE.shape == (len(BODY_KEYPOINT_NAMES), 33)
    np.testing.assert_allclose(BODY_FROM_POSE.sum(1), 1.0, atol=1e-6)   # affine: translation-equivariant
    assert MEDIAPIPE_TO_IBUG68.shape == (68,) and len(set(MEDIAPIPE_TO_IBUG68.tolist())) == 68
    assert MEDIAPIPE_TO_IBUG68.max() < 468


def test_coco_wholebody_body_and_face_match_gt(detector, realdata):
    img = cv2.imread(str(realdata / COCO_WB / "000000000785.jpg"))
    ann = json.loads((realdata / COCO_WB / "test_coco_wholebody_one_image.json").read_text())["annotations"][0]
    gt = _wholebody_gt(ann)
    det = detector.detect(img)
    assert isinstance(det, Detection) and det.validate().person
    assert det.image_size == (img.shape[1], img.shape[0])
    err = np.linalg.norm(det.wholebody_2d[:, :2] - gt[:, :2], axis=1)
    body = gt[:17, 2] > 0
    assert body.sum() == 17 and (det.wholebody_2d[:17, 2] > 0.5).all()
    # person box is 219 x 347 px; COCO GT itself is noisy by a few px
    assert np.median(err[:17]) < 10 and err[:17].max() < 30, err[:17].round(1)
    assert err[23:91].mean() < 5, err[23:91].round(1)                    # face 68 via the iBUG map
    # left/right: each predicted wrist/ankle is nearer the GT joint of the same side
    for left, right in ((9, 10), (15, 16)):
        assert err[left] < np.linalg.norm(det.wholebody_2d[left, :2] - gt[right, :2])
        assert err[right] < np.linalg.norm(det.wholebody_2d[right, :2] - gt[left, :2])
    # small toes are not available from MediaPipe: confidence 0, never a fake point
    assert det.wholebody_2d[[18, 21], 2].tolist() == [0.0, 0.0]
    # face outputs for the face fitting: 468 px landmarks inside the face box
    assert det.face_landmarks.shape == (468, 3) and det.face_conf == 1.0
    x, y, w, h = det.face_box
    fx, fy, fw, fh = ann["face_box"]
    assert abs(x - fx) < 0.3 * fw and abs(y - fy) < 0.3 * fh and 0.6 < w / fw < 1.6
    # 3D body: pelvis origin, metric, y down (head above pelvis for this upright skier)
    names = list(BODY_KEYPOINT_NAMES)
    np.testing.assert_allclose(det.body_3d[names.index("pelvis")], 0.0, atol=1e-6)
    assert det.body_3d[names.index("head"), 1] < -0.4
    ls, rs = names.index("left_shoulder"), names.index("right_shoulder")   # x right in 2D and 3D alike
    assert np.sign(det.body_3d[ls, 0] - det.body_3d[rs, 0]) == np.sign(det.body_2d[ls, 0] - det.body_2d[rs, 0])
    assert 0.2 < np.linalg.norm(det.body_3d[names.index("left_shoulder")] - det.body_3d[names.index("left_wrist")]) < 0.8


@pytest.mark.parametrize("stem", ["005880453_01", "ex2_2.flv_000040"])
def test_both_hands_found_on_the_correct_side(detector, realdata, stem):
    """CMU Panoptic hand DB labels each hand by the person's side (_l/_r files)."""
    img, gt = _panoptic(realdata, stem)
    det = detector.detect(img)
    assert det.person and (det.hands_conf == 1.0).all()
    for side_idx, side in enumerate(("left", "right")):
        kp, bbox = gt[side]
        pred = det.hands_2d[side_idx]
        err = np.linalg.norm(pred[:, :2] - kp[:, :2], axis=1)
        other = np.linalg.norm(det.hands_2d[1 - side_idx, :, :2] - kp[:, :2], axis=1)
        assert err.mean() < 0.25 * max(bbox[2], bbox[3]), (side, err.round(1))
        assert err.mean() < other.mean(), side
        # wrist-relative metric 3D scaled to the assumed palm length
        h3 = det.hands_3d[side_idx]
        np.testing.assert_allclose(h3[0], 0.0, atol=1e-7)
        assert np.linalg.norm(h3[9]) == pytest.approx(HAND_PALM_LENGTH_M, rel=1e-4)
    np.testing.assert_array_equal(det.wholebody_2d[91:112], det.hands_2d[0])
    np.testing.assert_array_equal(det.wholebody_2d[112:133], det.hands_2d[1])


def test_hand_only_crops_give_the_persons_side(detector, realdata):
    for stem, side in (("ex2_2.flv_000040", "left"), ("005880453_01", "right")):
        img, gt = _panoptic(realdata, stem)
        x, y, w, h = gt[side][1]
        c, cx, cy = 1.6 * max(w, h), x + w / 2, y + h / 2
        x0, y0 = int(max(cx - c / 2, 0)), int(max(cy - c / 2, 0))
        crop = np.ascontiguousarray(img[y0:int(cy + c / 2), x0:int(cx + c / 2)])
        hand = detector.detect_hand(crop)
        assert hand is not None and hand.side == side and hand.confidence > 0.5
        err = np.linalg.norm(hand.keypoints_2d[:, :2] + (x0, y0) - gt[side][0][:, :2], axis=1)
        assert err.mean() < 0.25 * max(w, h)
    # hand-graph-cnn crops show a hand with left-hand chirality (SOURCES.md section 2)
    hand = detector.detect_hand(cv2.imread(str(realdata / HGC_IMAGES / "00000.jpg")))
    assert hand is not None and hand.side == "left" and hand.keypoints_3d.shape == (21, 3)


def test_no_person_in_blank_or_noise_images(detector):
    rng = np.random.default_rng(0)
    for img in (np.zeros((240, 320, 3), np.uint8), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)):
        det = detector.detect(img).validate()
        assert not det.person and det.face_landmarks is None and det.face_box is None
        assert not det.body_2d[:, 2].any() and not det.hands_conf.any() and not det.wholebody_2d[:, 2].any()
        assert detector.detect_hand(img) is None


def test_video_mode_tracks_and_restarts_on_a_seek(detector, realdata):
    img = cv2.imread(str(realdata / COCO_WB / "000000000785.jpg"))
    still = detector.detect(img)
    for t in (0, 33, 66, 0, 33):           # the timestamp goes back: tracking restarts
        det = detector.detect(img, timestamp_ms=t)
        assert det.person
        assert np.abs(det.body_2d[:, :2] - still.body_2d[:, :2]).max() < 15


def test_bad_input_and_unknown_backends(detector):
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="H, W, 3"):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="side_hint"):
        detector.detect_hand(np.zeros((10, 10, 3), np.uint8), side_hint="up")
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("openpose")
    assert isinstance(detector, Detector)


def test_every_schema_choice_is_a_registered_backend():
    """``--detector`` choices (the options schema) and the registry name the same backends, and
    every registered ``module:class`` exists."""
    import importlib

    from model_runtime.core.options import DETECTORS
    from model_runtime.detectors import BACKENDS

    assert tuple(BACKENDS) == DETECTORS
    for target in BACKENDS.values():
        module, cls = target.split(":")
        assert isinstance(getattr(importlib.import_module(module, "model_runtime.detectors"), cls), type)


@pytest.mark.parametrize("complexity", [0, 2])
def test_unshipped_pose_models_are_not_downloaded(complexity):
    if os.path.exists(_pose_model_path(complexity)):
        pytest.skip(f"pose model {complexity} was installed by hand")
    with pytest.raises(ModelFileError, match="not be downloaded"):
        make_detector("mediapipe", model_complexity=complexity)
    assert not os.path.exists(_pose_model_path(complexity))


def test_body_face_points_come_from_the_face_mesh(detector, realdata):
    """Where a face mesh is kept, the body's nose lies on the mesh's segment from point 4 to the tip
    (point 1) and each eye 0.2 eye widths from its ring's centre, on the brow side (where the body
    model's keypoint vertices sit on the face: the pose model's face points are coarse on turned
    heads); on the COCO skier they land within a few px of the annotated eyes and nose (face ~40 px)."""
    img = cv2.imread(str(realdata / COCO_WB / "000000000785.jpg"))
    ann = json.loads((realdata / COCO_WB / "test_coco_wholebody_one_image.json").read_text())["annotations"][0]
    gt = _wholebody_gt(ann)
    det = detector.detect(img)
    names = list(BODY_KEYPOINT_NAMES)
    lm = det.face_landmarks[:, :2].astype(np.float64)
    nose = det.body_2d[names.index("nose"), :2]
    seg = lm[1] - lm[4]
    t = float((nose - lm[4]) @ seg / (seg @ seg))
    assert 0.3 < t < 0.5 and np.linalg.norm(lm[4] + t * seg - nose) < 1e-3
    mouth = lm[[13, 14]].mean(0)
    from model_runtime.face.landmarks import MP_LEFT_EYE_RING, MP_RIGHT_EYE_RING

    for name, ring, corners in (("left_eye", MP_LEFT_EYE_RING, (263, 362)), ("right_eye", MP_RIGHT_EYE_RING, (33, 133))):
        eye = det.body_2d[names.index(name), :2]
        width = np.linalg.norm(lm[corners[0]] - lm[corners[1]])
        centre = lm[list(ring)].mean(0)
        off = eye - centre
        assert 0.17 * width < np.linalg.norm(off) < 0.23 * width
        assert np.linalg.norm(eye - mouth) > np.linalg.norm(centre - mouth)          # towards the brow
    for name, coco in (("nose", 0), ("left_eye", 1), ("right_eye", 2)):
        err = np.linalg.norm(det.body_2d[names.index(name), :2] - gt[coco, :2])
        assert err < 6.0, (name, err)
