"""The face's colour detail (brows, lash lines, lips) seen in the video over the 3DMM albedo.

* ``vertex_visibility``: a sphere's near half is seen, its far half and a point hidden behind a nearer
  one are not, nor a point outside the image.
* ``sample_linear``: exact bilinear interpolation in linear RGB.
* ``AlbedoDetail``: colours rendered from a known albedo and lighting (Eq. 5) give back that albedo
  minus the base, faded where a vertex was seen fewer than ``FULL_SAMPLES`` times, zero where never;
  one wrong sample among several does not move the median.
* ``hair_zone`` / ``AlbedoDetail.hair_weight``: on the built-in face the zone is the forehead top and the
  temples, not the brows, eyes, nose, lips or chin; a zone vertex much darker than the skin (hair) keeps the
  3DMM albedo, a skin-coloured one its detail, a dark brow or a dark chin (a beard) its detail.
* ``FullBodyModel.vertex_colors``: the detail is added to the face's colours only.
* The capture file refuses a malformed ``face_albedo_detail`` in one line naming it.
* Blender (bpy as a module): the avatar's face colours carry the captured detail.
* A real capture (LivePortrait d0 is in ``tests/test_face_openings.py``): detail captured, and the whole
  face's render error in ``eval face-video`` lower than without it.
"""
from __future__ import annotations

import numpy as np
import pytest

from model_runtime.core.errors import ModelFileError
from model_runtime.face.albedo_detail import (
    FULL_SAMPLES, HAIR_LUMINANCE, AlbedoDetail, hair_zone, sample_linear, vertex_visibility
)
from model_runtime.face.fit import ambient_sh
from model_runtime.models.face_model import NUM_SH, sh_basis

K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])


def _sphere(n: int = 400, r: float = 0.1, z: float = 1.0):
    """Points on a sphere of radius ``r`` at depth ``z`` and their outward normals."""
    rng = np.random.default_rng(0)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * r + [0, 0, z], d


def _project(cam):
    return cam[:, :2] / cam[:, 2:] * 500.0 + [160, 120]


def test_visibility_of_a_sphere():
    cam, n = _sphere()
    vis = vertex_visibility(cam, n, _project(cam), (320, 240))
    near = n[:, 2] < -0.5                                  # facing the camera (it looks along +z)
    far = n[:, 2] > 0
    assert vis[near].all() and not vis[far].any()
    # a point 5 cm behind the sphere's front, on the same ray as its nearest point, is hidden by it
    k = int(np.argmin(n[:, 2]))
    behind = np.vstack([cam, cam[k] * (1 + 0.05 / np.linalg.norm(cam[k]))])
    nb = np.vstack([n, n[k]])
    vb = vertex_visibility(behind, nb, _project(behind), (320, 240))
    assert vb[k] and not vb[-1]
    small = vertex_visibility(cam, n, _project(cam), (150, 240))          # the image cut at x = 149
    assert not small[_project(cam)[:, 0] > 149].any()


def test_bilinear_samples_in_linear_rgb():
    img = np.zeros((4, 4, 3), np.uint8)
    img[1, 1] = (0, 0, 200)          # BGR: red 200 at (x=1, y=1)
    img[1, 2] = (0, 0, 100)
    c = sample_linear(img, np.array([[1.0, 1.0], [1.5, 1.0], [1.25, 1.0]]))
    np.testing.assert_allclose(c[:, 0], [(200 / 255) ** 2.2, (150 / 255) ** 2.2, (175 / 255) ** 2.2], rtol=1e-9)
    assert (c[:, 1:] == 0).all()


def test_detail_recovers_the_albedo_seen():
    cam, n = _sphere()
    N = len(cam)
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.2, 0.8, (N, 3))
    base = np.full((N, 3), 0.5)
    sh = ambient_sh(0.8)
    sh = sh + np.concatenate([[0, 0.1, -0.1, 0.05, 0, 0, 0, 0, 0]] * 3)     # some directional light
    irr = sh_basis(n) @ sh.reshape(3, NUM_SH).T
    colour = np.clip(truth * irr, 0, 1)
    det = AlbedoDetail(N)

    def add(c):
        # an image whose pixels at the projected points hold those colours (one pixel per point)
        img = np.zeros((240, 320, 3), np.uint8)
        px = np.round(_project(cam)).astype(int)
        img[px[:, 1], px[:, 0]] = np.round(255 * c ** (1 / 2.2))[:, ::-1]
        cam_px = np.c_[(px - [160, 120]) / 500.0 * cam[:, 2:], cam[:, 2:]]     # the points at those pixels
        return det.add(img, cam_px, n, K)

    assert not det.detail(base, sh).any()                              # no samples: none
    assert add(colour)
    px = np.round(_project(cam)).astype(int)
    _, first, counts = np.unique(px[:, 1] * 320 + px[:, 0], return_index=True, return_counts=True)
    alone = np.zeros(N, bool)
    alone[first[counts == 1]] = True                                   # the only point on its pixel
    seen = vertex_visibility(cam, n, _project(cam), (320, 240))
    one = det.detail(base, sh)
    assert not one[~seen].any()
    check = seen & alone
    assert check.sum() > 100
    assert np.allclose(one[check], (truth[check] - base[check]) / FULL_SAMPLES, atol=0.02)   # faded: seen once
    for _ in range(FULL_SAMPLES - 1):
        add(colour)
    wrong = colour.copy()
    wrong[:] = 0.0                                                     # a sample that is all black (a blink, a hand)
    add(wrong)
    add(colour)
    full = det.detail(base, sh)
    good = check & (irr > 0.1).all(1) & (np.abs(n[:, 2]) > 0.5)
    assert np.abs(full[good] - (truth[good] - base[good])).max() < 0.03    # 8-bit rounding, divided by the light


def test_hair_zone_and_weight_on_the_built_in_face():
    from model_runtime.face.correspondence import correspondence_for
    from model_runtime.models.load import load_face_model

    m = load_face_model(None)
    mean = np.asarray(m.mean_shape, np.float64).reshape(-1, 3)
    lm = correspondence_for(m).points(mean[None])[0]
    zone, skin = hair_zone(mean, lm)
    near = lambda i: int(np.argmin(((mean - lm[i]) ** 2).sum(1)))    # noqa: E731 - the vertex at landmark i
    assert zone[near(10)] and zone[near(54)] and zone[near(284)]          # forehead top, both temples' tops
    assert zone[near(93)] and zone[near(323)]                              # the face's sides
    for i in (105, 334, 159, 386, 1, 13, 61):                              # brows, upper lids, nose tip, lips
        assert not zone[near(i)] and not skin[near(i)], i
    assert skin[near(50)] and skin[near(280)] and skin[near(152)]          # cheeks' centres, chin
    assert 100 < zone.sum() < 0.25 * len(mean) and not (zone & skin).any()

    det = AlbedoDetail(len(mean), (zone, skin))
    obs = np.full((len(mean), 3), 0.5)                                     # skin 0.5 everywhere ...
    lo, hi = HAIR_LUMINANCE
    hair, light, brow, chin = near(10), near(54), near(105), near(152)
    obs[hair] = 0.5 * (lo - 0.1)                                           # ... dark hair on the forehead
    obs[light] = 0.5 * 0.95                                                # a temple a bit darker than the cheeks
    obs[brow] = obs[chin] = 0.05                                           # a dark brow, a beard
    w = det.hair_weight(obs, np.ones(len(mean), bool))
    assert w[hair] == 0.0 and w[light] == 1.0 and w[brow] == 1.0 and w[chin] == 1.0
    assert (w[~zone] == 1.0).all()
    assert AlbedoDetail(len(mean)).hair_weight(obs, np.ones(len(mean), bool)).min() == 1.0   # no zone: no fading


def test_vertex_colors_add_the_detail_to_the_face_only():
    from model_runtime.models.full_model import build_full_model
    from model_runtime.models.load import load_body_model, load_face_model

    full = build_full_model(load_body_model(None), load_face_model(None))
    plain = full.vertex_colors()
    detail = np.zeros((full.face.num_vertices, 3), np.float32)
    detail[::7] = [-0.2, 0.05, 0.1]
    coloured = full.vertex_colors(detail=detail)
    np.testing.assert_array_equal(coloured[: full.num_body_vertices], plain[: full.num_body_vertices])
    f = coloured[full.face_vertex_slice] - plain[full.face_vertex_slice]
    assert np.abs(f[1::7]).max() < 1e-7 and np.abs(f[::7]).max() > 0.01
    np.testing.assert_array_equal(full.vertex_colors(detail=detail[:10]), plain)     # another model's detail: ignored


def test_capture_file_refuses_a_malformed_detail(tmp_path):
    import blender_helpers as H
    from model_runtime.core.capture_file import load_capture

    path = H.write_capture(tmp_path / "c.npz", T=3)
    assert load_capture(path)["face_albedo_detail"].shape == (0, 3)          # older writer: none
    with np.load(path) as z:
        arrays = dict(z)
    for bad_value, why in ((np.zeros((10, 2), np.float32), "shape"), (np.full((10, 3), 3.0, np.float32), "within [-1, 1]")):
        arrays["face_albedo_detail"] = bad_value
        bad = tmp_path / "bad.npz"
        np.savez(bad, **arrays)
        with pytest.raises(ModelFileError, match="face_albedo_detail") as e:
            load_capture(bad)
        assert why in str(e.value) and str(bad) in str(e.value)


bpy = pytest.importorskip("bpy")


def test_blender_face_colours_carry_the_detail(tmp_path):
    import blender_helpers as H
    from fullbody_addon import avatar
    from fullbody_addon.avatar_data import avatar_data_from_capture
    from model_runtime.core.capture_file import load_capture
    from model_runtime.models.face_model import load_builtin_face

    face = load_builtin_face()
    path = H.write_capture(tmp_path / "g.npz", T=3, expression_names=face.exp_names)
    plain = avatar_data_from_capture(load_capture(path))
    with np.load(path) as z:
        arrays = dict(z)
    detail = np.zeros((face.num_vertices, 3), np.float32)
    detail[:, 0] = -0.1                                                   # less red everywhere on the face
    arrays["face_albedo_detail"] = detail
    np.savez(path, **arrays)
    data = avatar_data_from_capture(load_capture(path))
    d = data.colors - plain.colors
    face_rows = slice(len(d) - face.num_vertices, len(d))
    assert (d[: face_rows.start] == 0).all()                              # the body keeps its tone
    assert np.median(d[face_rows, 0]) == pytest.approx(-0.1, abs=1e-6) and np.abs(d[face_rows, 1:]).max() < 1e-6
    bpy.ops.wm.read_factory_settings(use_empty=True)
    _, mesh = avatar.create_avatar(data, name="Detail")
    c = np.zeros(len(mesh.data.vertices) * 4, np.float32)
    mesh.data.color_attributes[avatar.COLOR_ATTRIBUTE].data.foreach_get("color", c)
    np.testing.assert_allclose(c.reshape(-1, 4)[:, :3], np.clip(data.colors, 0, 1), atol=1e-6)


def test_points_inside_the_face_outline():
    from model_runtime.face.albedo_detail import inside_polygon

    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    pts = np.array([[5, 5], [-1, 5], [11, 5], [5, 11], [0.5, 9.5], [9.9, 0.1]])
    np.testing.assert_array_equal(inside_polygon(pts, square), [True, False, False, False, True, True])
    notch = np.array([[0, 0], [10, 0], [10, 10], [5, 2], [0, 10]], float)       # concave: the notch is outside
    assert not inside_polygon(np.array([[5, 6]]), notch)[0] and inside_polygon(np.array([[5, 1]]), notch)[0]
