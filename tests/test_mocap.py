"""MoCap parsers (ASF/AMC, BVH), their forward kinematics and retargeting to SMPL-H, on real clips."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from model_runtime.core.errors import InputMissingError, InputUnreadableError
from model_runtime.mocap.asf_amc import find_asf_for, load_amc_clip, parse_asf
from model_runtime.mocap.bvh import load_bvh_clip, parse_bvh
from model_runtime.mocap.fk import euler_to_matrix

HDM_CLIP = "hdm05/train/1/HDM_bd_depositFloorR_001_120.amc"
BANDAI_CLIP = "bandai_namco/dataset/Bandai-Namco-Research-Motiondataset-1/data/dataset-1_walk_normal_001.bvh"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _manifest_frames(mocap_dir, rel: str) -> int:
    with open(mocap_dir / "MANIFEST.csv") as fh:
        for row in csv.DictReader(fh):
            if row["path"] == rel:
                return int(row["frames"])
    raise KeyError(rel)


def test_euler_matches_scipy():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    ang = rng.uniform(-180, 180, size=(50, 3))
    for order in ("ZXY", "ZYX", "XYZ"):
        ref = Rotation.from_euler(order, ang, degrees=True).as_matrix()  # upper case = intrinsic
        assert np.allclose(euler_to_matrix(ang, order), ref, atol=1e-10)


def test_hdm05_amc_parse_and_fk(mocap_dir):
    path = mocap_dir / HDM_CLIP
    assert find_asf_for(path).name == "HDM_bd.asf"
    clip = load_amc_clip(path)
    assert clip.num_frames == _manifest_frames(mocap_dir, HDM_CLIP)
    assert clip.fps == 120.0 and clip.positions.shape[1:] == (31, 3)
    # T-pose from the ASF alone: head (upperneck end) ~1.5-1.7 m above the toes
    skel = parse_asf(find_asf_for(path))
    from model_runtime.mocap.asf_amc import amc_fk

    rest = amc_fk(skel, np.zeros((1, len(skel.names) + 1, 3)))[0]
    names = list(skel.names)
    height = rest[names.index("head"), 1] - rest[names.index("ltoes"), 1]
    assert 1.5 < height < 1.85, height
    # first frame (standing): head joint height about 1.59 m (SOURCES.md)
    head = clip.node("upperneck")[0, 1] - min(clip.node("ltoes")[0, 1], clip.node("rtoes")[0, 1])
    assert 1.45 < head < 1.7, head
    # bones keep their lengths through the motion
    bone = np.linalg.norm(clip.node("lfemur") - clip.node("ltibia"), axis=-1)
    assert bone.std() < 1e-5 and 0.3 < bone.mean() < 0.5


def test_bandai_bvh_parse_and_fk(mocap_dir):
    clip = load_bvh_clip(mocap_dir / BANDAI_CLIP)
    assert clip.num_frames == _manifest_frames(mocap_dir, BANDAI_CLIP)
    assert abs(clip.fps - 30.0) < 1e-3
    body = clip.positions[:, [clip.node_names.index(n) for n in clip.node_names if not n.endswith("_end")]]
    height = body[..., 1].max(1) - body[..., 1].min(1)
    assert np.all((height > 1.2) & (height < 1.9)), (height.min(), height.max())
    # walking: the hips travel, the feet stay near the floor at some point
    assert np.linalg.norm(clip.node("Hips")[-1] - clip.node("Hips")[0]) > 0.5
    assert clip.node("Toes_L")[:, 1].min() < 0.1
    # left side is +x relative to the facing direction (toes point forward = +z in the body frame)
    left = clip.node("UpperLeg_L") - clip.node("UpperLeg_R")
    fwd = (clip.node("Toes_L") - clip.node("Foot_L")) * np.array([1.0, 0.0, 1.0])
    up = np.cross(fwd, left)[:, 1]
    # forward x left points up in a right-handed Y-up frame (as SMPL-H: faces +z, left = +x)
    assert (up > 0).mean() > 0.75


def test_bvh_truncated_motion_names_file(tmp_path, mocap_dir):
    text = (mocap_dir / BANDAI_CLIP).read_text()
    bad = tmp_path / "cut.bvh"
    bad.write_text(text[: int(len(text) * 0.8)])
    with pytest.raises(InputUnreadableError, match="cut.bvh.*header says"):
        parse_bvh(bad)
    with pytest.raises(InputMissingError):
        load_bvh_clip(tmp_path / "missing.bvh")


def test_amc_unknown_bone_names_frame(tmp_path, mocap_dir):
    src = mocap_dir / HDM_CLIP
    lines = src.read_text(encoding="latin-1").splitlines()
    i = lines.index("2")  # frame 2 header
    lines.insert(i + 2, "lpinky 1 2 3")
    (tmp_path / "HDM_bd.asf").write_text(find_asf_for(src).read_text(encoding="latin-1"), encoding="latin-1")
    bad = tmp_path / "HDM_bd_x_120.amc"
    bad.write_text("\n".join(lines), encoding="latin-1")
    with pytest.raises(InputUnreadableError, match=r"frame 2: bone 'lpinky'"):
        load_amc_clip(bad)


def test_retarget_real_clip(mocap_dir, tmp_path, monkeypatch):
    """Retargeting a real clip to the built-in SMPL-H body lands near the source joints."""
    import torch

    from model_runtime.models.load import load_body_model
    from model_runtime.models.keypoints import PartKinematics
    from model_runtime.mocap.retarget import SolverSettings, retarget_clips
    from model_runtime.core.rotations import rot6d_to_matrix

    monkeypatch.setenv("FULLBODY_CACHE", str(tmp_path))
    kin = PartKinematics(load_body_model(), "body")
    clips = [load_bvh_clip(mocap_dir / BANDAI_CLIP).subsample(6)]
    clips.append(load_amc_clip(mocap_dir / HDM_CLIP).subsample(6))
    settings = SolverSettings(iters=120)
    res = retarget_clips(clips, kin, settings)
    for r, c in zip(res, clips):
        assert r.rot6d.shape == (c.num_frames, 22, 6) and r.betas.shape == (16,)
        assert np.median(r.fit_mm) < 45.0, (c.path, np.median(r.fit_mm))
        R = rot6d_to_matrix(torch.as_tensor(r.rot6d))
        assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3).expand_as(R), atol=1e-4)
        assert 0.7 < r.scale < 1.3
    # second call is served from the cache, identically
    again = retarget_clips(clips, kin, settings)
    assert np.array_equal(again[0].rot6d, res[0].rot6d) and len(list(tmp_path.rglob("*.npz"))) == 2
