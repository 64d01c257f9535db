"""The add-on in a Blender-like Python: bpy and numpy, but no scipy, torch, cv2 or mediapipe.

Blender's own Python lacks those packages.  Each test runs a real child
process whose ``sys.meta_path`` starts with a finder that refuses them, imports
bpy, enables the add-on as Blender would (``addon_utils.enable``) and creates
avatars with the real operator:

* built-in body + built-in face: the merged face is built in that Python
  (``bridge``/``full_model`` are numpy only): vertex count = ``model info``'s
  merged count, one shape key per expression, no body-only fallback;
* SMPL-H ``.npz`` body + ``BFM_model_front.mat`` face: the ``.mat`` needs scipy,
  so the add-on asks the runtime (this venv's Python, set in the add-on
  preferences) for an avatar file; the mesh equals the one built in-process;
* a truncated ``.mat`` and a runtime that is not set up: the operator's error
  names the file and the scene is left as it was.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bpy")
pytest.importorskip("scipy.io")  # only this test process writes the .mat

from test_bridge import write_official_layout_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("scipy", "torch", "cv2", "mediapipe")

CHILD = textwrap.dedent('''
    import json, sys
    BLOCKED = {blocked!r}

    class Refuse:
        """Import of a blocked package fails, as in Blender's own Python."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError("No module named %r (blocked)" % name, name=name)
            return None

    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    sys.meta_path.insert(0, Refuse())
    try:
        import scipy  # noqa: F401
        sys.exit("the blocker did not block scipy")
    except ImportError:
        pass
    import bpy, addon_utils
    import numpy as np
    for case in json.loads(sys.argv[1]):
        bpy.ops.wm.read_factory_settings(use_empty=True)   # also resets the preferences: enable again
        assert addon_utils.enable("fullbody_addon", default_set=True) is not None
        from fullbody_addon import avatar
        prefs = bpy.context.preferences.addons["fullbody_addon"].preferences
        s = bpy.context.scene.fullbody
        for k, v in case["settings"].items():
            setattr(s, k, v)
        prefs.interpreter_mode, prefs.python_path = "CUSTOM", case["python"]
        before = sorted(o.name for o in bpy.data.objects)
        out = {{"name": case["name"]}}
        try:
            out["result"] = sorted(bpy.ops.fullbody.create_avatar())
        except RuntimeError as e:      # an ERROR report raised by bpy.ops
            out["error"] = str(e)
            out["scene_unchanged"] = sorted(o.name for o in bpy.data.objects) == before
        else:
            me = avatar.avatar_mesh(avatar.find_avatar(bpy.context)).data
            co = np.empty(3 * len(me.vertices), np.float32)
            me.vertices.foreach_get("co", co)
            np.save(case["dump"], co.reshape(-1, 3))
            out["vertices"] = len(me.vertices)
            out["shape_keys"] = len(me.shape_keys.key_blocks) if me.shape_keys else 0
        out["blocked_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("RESULT " + json.dumps(out), flush=True)
''').format(blocked=BLOCKED)


def run_child(tmp_path: Path, cases: list[dict]) -> tuple[dict, str]:
    """Run the cases in one blocked child; returns ``{name: result}`` and the child's stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FULLBODY_AVATAR_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    results = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            results[res["name"]] = res
    assert len(results) == len(cases), r.stdout + r.stderr
    return results, r.stdout


def model_info(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "model_runtime", "model", "info", "--json", *args], capture_output=True,
                       text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def official_layout_files(tmp_path_factory) -> tuple[Path, Path]:
    """The sphere body as an AMASS-style SMPL-H ``.npz``, the cap face as a ``BFM_model_front.mat``."""
    return write_official_layout_files(tmp_path_factory.mktemp("official"))


def test_builtin_body_and_face_merge_inside_a_python_without_scipy(tmp_path):
    facts = model_info()
    results, stdout = run_child(tmp_path, [{
        "name": "builtin", "python": str(tmp_path / "no-runtime" / "python"), "dump": str(tmp_path / "b.npy"),
        "settings": {"body_model": "BUILTIN", "face": True, "face_model": "BUILTIN"}}])
    r = results["builtin"]
    assert r.get("result") == ["FINISHED"], r
    assert r["vertices"] == facts["merged"]["vertices"] != facts["body"]["vertices"]  # merged face, not the body alone
    assert r["shape_keys"] == 1 + len(facts["face"]["expression_names"])
    assert r["blocked_loaded"] == []
    assert "no face on this avatar" not in stdout


def test_bfm_face_is_converted_by_the_runtime_and_errors_name_the_file(tmp_path, official_layout_files):
    from fullbody_addon import axes
    from fullbody_addon.avatar_data import avatar_data_from_capture
    from model_runtime.models.load import load_body_model
    from model_runtime.core.capture_file import Capture

    body_file, bfm_file = official_layout_files
    bad = tmp_path / "truncated_BFM.mat"
    bad.write_bytes(bfm_file.read_bytes()[:300])
    settings = {"body_model": "SMPLH", "smplh_path": str(body_file), "face": True, "face_model": "BFM"}
    cases = [
        {"name": "bfm", "python": sys.executable, "dump": str(tmp_path / "bfm.npy"),
         "settings": {**settings, "bfm_path": str(bfm_file)}},
        {"name": "truncated", "python": sys.executable, "dump": "", "settings": {**settings, "bfm_path": str(bad)}},
        {"name": "no_runtime", "python": str(tmp_path / "missing" / "python"), "dump": "",
         "settings": {**settings, "bfm_path": str(tmp_path / "other_BFM.mat")}},
    ]
    results, _ = run_child(tmp_path, cases)

    ok = results["bfm"]
    assert ok.get("result") == ["FINISHED"], ok
    facts = model_info("--body", str(body_file), "--face", str(bfm_file))
    assert ok["vertices"] == facts["merged"]["vertices"] and ok["shape_keys"] == 1 + 3
    assert ok["blocked_loaded"] == []
    # the runtime's avatar file gives the same rest mesh as building it here (this Python has scipy)
    here = avatar_data_from_capture(Capture(path=Path("<neutral>"), data={"betas": np.zeros(16, np.float32)}),
                                    body=load_body_model(str(body_file)), face=str(bfm_file))
    np.testing.assert_allclose(np.load(tmp_path / "bfm.npy"), here.vertices, atol=1e-5)
    assert np.allclose(axes.model_points_to_blender(here.rest_joints_model), here.heads)
    assert len(list((tmp_path / "cache").glob("avatar_*.npz"))) == 1

    trunc = results["truncated"]
    assert "error" in trunc and str(bad) in trunc["error"] and trunc["scene_unchanged"], trunc
    assert "converted by the runtime" in trunc["error"]
    missing = results["no_runtime"]
    assert "error" in missing and "other_BFM.mat" in missing["error"] and "Set up runtime" in missing["error"], missing
    assert missing["scene_unchanged"]
