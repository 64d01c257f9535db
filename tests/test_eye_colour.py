"""The person's iris colour: sampled from a real frame, kept per clip in the capture file, given to the
avatar's eyeballs in real Blender (bpy as a module).

* ``face.eye_colour.sample_eye_colours`` on LivePortrait d0's first frame (shared data, MediaPipe's
  refined mesh): a dark brown iris, darker than the sclera; nothing where the eye is not seen
  (closed lids, an eye a few pixels wide, NaN landmarks, no iris landmarks).
* ``eye_albedo``: the colour divided by the SH irradiance towards the camera.
* The capture file: ``iris_colour`` zeros by default, a value out of [0, 1] refused in one line naming it.
* Blender: the eyeballs' iris vertices take the capture's colour; without one, the default brown.
"""
from __future__ import annotations

import numpy as np
import pytest

from model_runtime.core.errors import ModelFileError
from model_runtime.face.eye_colour import (
    EYE_CONTOURS, EyeColourEstimate, EyeSample, eye_albedo, sample_eye_colours
)
from model_runtime.face.fit import ambient_sh


@pytest.fixture(scope="module")
def d0_frame(d0_first_frame):
    img, d = d0_first_frame
    return img, d.face_landmarks.astype(np.float64), d.extras["iris_landmarks_px"].astype(np.float64)


def test_iris_of_a_real_frame(d0_frame):
    img, lm, iris = d0_frame
    s = sample_eye_colours(img, lm, iris)
    assert s is not None and (s.pixels >= 20).all(), s
    iris_c, sclera_c = s.colours
    srgb = 255 * iris_c ** (1 / 2.2)
    assert (srgb < 110).all() and srgb[0] >= srgb[2], srgb            # dark brown (sRGB ~66, 49, 46)
    assert iris_c.sum() < 0.5 * sclera_c.sum(), s.colours               # the sclera is the lighter one


def test_nothing_is_sampled_where_the_eye_is_not_seen(d0_frame):
    img, lm, iris = d0_frame
    shut = lm.copy()
    for contour in EYE_CONTOURS:           # lower lid onto the upper one: no opening
        c = np.array(contour)
        shut[c[9:], 1] = shut[c[1:8], 1].mean()
        shut[c, 1] = shut[c[1:8], 1].mean()
    assert sample_eye_colours(img, shut, iris) is None
    centre = lm[:, :2].mean(0)
    tiny_lm, tiny_iris = lm.copy(), iris.copy()        # the same face a fifth as large: irises of ~2 px
    tiny_lm[:, :2] = centre + (lm[:, :2] - centre) / 5
    tiny_iris[:, :2] = centre + (iris[:, :2] - centre) / 5
    assert sample_eye_colours(img, tiny_lm, tiny_iris) is None
    bad = lm.copy()
    bad[33, 0] = np.nan
    assert sample_eye_colours(img, bad, iris) is None
    assert sample_eye_colours(img, lm, None) is None
    assert sample_eye_colours(img, lm, iris[:5]) is None


def test_albedo_is_the_colour_over_the_light_and_the_clip_mean(d0_frame):
    s = EyeSample(colours=np.array([[0.04, 0.03, 0.02], [0.5, 0.4, 0.4]]), pixels=np.array([50, 80]))
    forward = np.array([0.0, 0.0, -1.0])
    from model_runtime.models.face_model import sh_shading
    sh = ambient_sh(0.8)
    irr = sh_shading(np.ones((1, 1, 3)), forward[None, None], sh[None])[0, 0]
    np.testing.assert_allclose(eye_albedo(s, sh, forward), s.colours[0] / irr)
    assert eye_albedo(s, np.zeros(27), forward) is None                    # no light: no albedo
    img, lm, iris = d0_frame
    est = EyeColourEstimate(max_frames=2)
    assert not est.value().any()                                           # zeros: not seen yet
    assert est.add(img, lm, iris, sh, forward) and est.add(img, lm, iris, sh, forward)
    assert not est.add(img, lm, iris, sh, forward)                         # frozen after max_frames
    want = eye_albedo(sample_eye_colours(img, lm, iris), sh, forward)
    np.testing.assert_allclose(est.value(), want, rtol=1e-6)
    est.reset()
    assert not est.value().any()


def test_capture_file_iris_colour(tmp_path):
    import blender_helpers as H
    from model_runtime.core.capture_file import load_capture

    path = H.write_capture(tmp_path / "c.npz", T=3)
    cap = load_capture(path)
    assert cap["iris_colour"].shape == (3,) and not cap["iris_colour"].any()     # older writer: the default
    with np.load(path) as z:
        arrays = dict(z)
    arrays["iris_colour"] = np.array([0.1, 1.5, 0.0], np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ModelFileError, match="iris_colour") as e:
        load_capture(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


bpy = pytest.importorskip("bpy")


def test_blender_eyes_take_the_captured_iris(tmp_path):
    import blender_helpers as H
    from fullbody_addon import avatar, face_rig
    from fullbody_addon.avatar_data import avatar_data_from_capture
    from model_runtime.core.capture_file import load_capture
    from model_runtime.models.face_model import load_builtin_face

    face = load_builtin_face()
    path = H.write_capture(tmp_path / "g.npz", T=3, expression_names=face.exp_names)
    with np.load(path) as z:
        arrays = dict(z)
    blue = np.array([0.05, 0.12, 0.3], np.float32)
    arrays["iris_colour"] = blue
    np.savez(path, **arrays)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    data = avatar_data_from_capture(load_capture(path))
    np.testing.assert_allclose(data.iris_colour, blue)
    arm, _ = avatar.create_avatar(data, name="Blue")

    def has(o, rgb) -> bool:
        c = np.zeros(len(o.data.vertices) * 4, np.float32)
        o.data.color_attributes[face_rig.COLOR_ATTRIBUTE].data.foreach_get("color", c)
        return bool(np.isclose(c.reshape(-1, 4)[:, :3], np.asarray(rgb, np.float32), atol=1e-6).all(1).any())

    for o in face_rig.find_eyes(arm):
        assert has(o, blue) and not has(o, face_rig.IRIS_RGB)
    arrays["iris_colour"] = np.zeros(3, np.float32)                       # none captured: the default
    np.savez(path, **arrays)
    data = avatar_data_from_capture(load_capture(path))
    assert data.iris_colour is None
    arm2, _ = avatar.create_avatar(data, name="Default")
    for o in face_rig.find_eyes(arm2):
        assert has(o, face_rig.IRIS_RGB) and not has(o, blue)
