"""Keypoint evaluations: metric arithmetic on hand-computed examples, GT loading, and the real
``eval coco-wholebody`` / ``eval hand3d`` commands on the data in ../shared."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from model_runtime.cli import main as cli
from model_runtime.core.errors import EXIT_USAGE, InputMissingError, InputUnreadableError
from model_runtime.evals.coco_wholebody import HALPE_TO_WHOLEBODY, annotation_keypoints, score
from model_runtime.evals.common import detection_rate, enlarged_box, mpjpe, pck, pck_hits, procrustes_align

COCO_DIR = "mmpose/tests/data/coco"
COCO_ANN = f"{COCO_DIR}/test_coco_wholebody_one_image.json"
HGC = "hand-graph-cnn/data/real_world_testset"


def _run_cli(capsys, argv: list[str]) -> tuple[int, dict | None]:
    code = cli.main(argv)
    out = capsys.readouterr().out
    return code, (json.loads(out) if code == 0 else None)


# ---------------------------------------------------------------- metrics, hand-computed
def test_pck_on_a_hand_computed_example():
    # person 0: box longer side 100 -> radii 10 (0.1) and 20 (0.2)
    # person 1: box longer side 50  -> radii 5 and 10
    gt = np.array([
        [[0, 0, 2], [10, 10, 1], [50, 50, 2], [7, 7, 0]],      # last keypoint unlabelled
        [[0, 0, 1], [20, 0, 1], [0, 0, 1], [9, 9, 2]],
    ], float)
    pred = np.array([
        [[6, 8, 0.9], [10, 25, 0.8], [80, 50, 0.5], [0, 0, 0.0]],   # dist 10, 15, 30; unlabelled ignored
        [[3, 4, 0.9], [20, 9, 0.7], [0, 0, 0.0], [9, 9, 0.4]],      # dist 5, 9, miss (conf 0), 0
    ], float)
    norm = np.array([100.0, 50.0])
    hits_01 = pck_hits(pred, gt, norm, 0.1)
    np.testing.assert_array_equal(hits_01, [[True, False, False, False], [True, False, False, True]])
    # 7 labelled keypoints; at 0.1: 10<=10, 5<=5, 0<=5 -> 3; at 0.2: + 15<=20, 9<=10 -> 5 (30 > 20, miss)
    assert pck(pred, gt, norm, 0.1) == pytest.approx(3 / 7)
    assert pck(pred, gt, norm, 0.2) == pytest.approx(5 / 7)
    assert pck(pred, np.zeros_like(gt), norm, 0.1) is None
    # detection rate: both persons labelled, both returned something
    assert detection_rate(pred, gt) == 1.0
    pred[1, :, 2] = 0
    assert detection_rate(pred, gt) == 0.5


def test_score_reports_every_part_and_null_for_unlabelled_parts():
    gt = np.zeros((1, 133, 3))
    gt[0, :17] = [100, 100, 2]
    pred = gt.copy()
    pred[0, :17, 0] += 25                                   # 25 px off, box longer side 200
    r = score(pred, gt, np.array([[0, 0, 120, 200]]))
    assert r["persons"] == 1
    assert r["pck@0.1"]["body"] == 0.0 and r["pck@0.2"]["body"] == 1.0
    assert r["detection_rate"] == {"body": 1.0, "feet": None, "face": None, "left_hand": None, "right_hand": None}


def test_procrustes_recovers_a_similarity_and_mpjpe_units():
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(4, 21, 3))
    rot = Rotation.random(4, random_state=4).as_matrix()
    pred = 1.7 * np.einsum("nij,nkj->nki", rot, gt) + rng.normal(size=(4, 1, 3))
    np.testing.assert_allclose(procrustes_align(pred, gt), gt, atol=1e-9)
    # a mirrored hand is not "aligned" by a reflection
    assert mpjpe(procrustes_align(gt * [-1, 1, 1], gt), gt).min() > 0.1
    np.testing.assert_allclose(mpjpe(np.zeros((1, 2, 3)), np.array([[[3, 4, 0], [0, 0, 2]]])), [3.5])


def test_enlarged_box_is_centred_and_clipped():
    assert enlarged_box(np.array([40, 40, 20, 40]), 1.25, 640, 480) == (37, 35, 63, 85)
    assert enlarged_box(np.array([0, 0, 100, 100]), 1.25, 110, 90) == (0, 0, 110, 90)


def test_halpe_annotations_map_to_wholebody_order():
    rng = np.random.default_rng(0)
    wb = {"keypoints": rng.random(51), "foot_kpts": rng.random(18), "face_kpts": rng.random(204),
          "lefthand_kpts": rng.random(63), "righthand_kpts": rng.random(63)}
    expected = annotation_keypoints(wb, "wb")
    halpe = np.zeros((136, 3))
    halpe[HALPE_TO_WHOLEBODY] = expected
    np.testing.assert_array_equal(annotation_keypoints({"keypoints": halpe.ravel().tolist()}, "halpe"), expected)
    with pytest.raises(InputUnreadableError, match="'face_kpts' has 3 values"):
        annotation_keypoints({**wb, "face_kpts": [1, 2, 3]}, "ann.json: annotation 7")
    with pytest.raises(InputUnreadableError, match="neither COCO-WholeBody"):
        annotation_keypoints({"keypoints": [0] * 51}, "ann.json: annotation 7")


# ---------------------------------------------------------------- real commands
def test_eval_coco_wholebody_cli(capsys, realdata, tmp_path):
    ann = realdata / COCO_ANN
    code, r = _run_cli(capsys, ["eval", "coco-wholebody", "--ann", str(ann), "--json"])
    assert code == 0 and set(r) == {"pck@0.1", "pck@0.2", "detection_rate", "persons"}
    assert r["persons"] == 1
    for key in ("pck@0.1", "pck@0.2", "detection_rate"):
        assert set(r[key]) == {"body", "feet", "face", "left_hand", "right_hand"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in r[key].values())
    assert r["pck@0.2"]["body"] >= 0.9 and r["pck@0.1"]["face"] >= 0.9
    assert r["pck@0.1"]["body"] <= r["pck@0.2"]["body"]
    assert r["pck@0.2"]["feet"] <= 4 / 6        # small toes are never predicted: they count as misses
    assert r["detection_rate"]["left_hand"] is None   # not labelled in this image

    # a second image whose file is missing (held aside) is skipped, not fatal
    data = json.loads(ann.read_text())
    extra_img = {**data["images"][0], "id": 999, "file_name": "not_here.jpg"}
    extra_ann = {**data["annotations"][0], "id": 1, "image_id": 999}
    two = tmp_path / "two.json"
    two.write_text(json.dumps({**data, "images": data["images"] + [extra_img],
                               "annotations": data["annotations"] + [extra_ann]}))
    code, r2 = _run_cli(capsys, ["eval", "coco-wholebody", "--ann", str(two),
                                 "--images", str(ann.parent), "--json"])
    assert code == 0 and r2 == r


def test_eval_coco_wholebody_bad_input(tmp_path):
    from model_runtime.evals.coco_wholebody import load_persons

    with pytest.raises(InputMissingError, match="nope.json"):
        load_persons(tmp_path / "nope.json", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": [{"id": 5, "keypoints": [1, 2]}]}))
    with pytest.raises(InputUnreadableError, match="annotation 5"):
        load_persons(bad, tmp_path)


def test_eval_hand3d_cli_on_ten_images(capsys, realdata):
    code, r = _run_cli(capsys, ["eval", "hand3d", "--dir", str(realdata / HGC), "--limit", "10", "--json"])
    assert code == 0 and set(r) == {"mpjpe_mm", "pa_mpjpe_mm", "detection_rate", "images"}
    assert r["images"] == 10 and r["detection_rate"] >= 0.8
    # plausible for a monocular detector: centimetre-level, and Procrustes only helps
    assert 5.0 < r["pa_mpjpe_mm"] < r["mpjpe_mm"] < 40.0


def test_eval_bad_dir_and_unknown_detector(capsys, tmp_path):
    from model_runtime.evals.hand3d import load_testset

    with pytest.raises(InputMissingError, match="params.mat"):
        load_testset(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "hand3d", "--dir", str(tmp_path), "--detector", "openpose"])
    assert e.value.code == EXIT_USAGE and "invalid choice: 'openpose'" in capsys.readouterr().err
