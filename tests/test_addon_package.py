"""Packaging: the manifest is valid, ``build_addon.py`` writes a zip that Blender installs,
enables and unregisters cleanly (in a separate Blender process with its own user folder)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("bpy")

INSTALL_SCRIPT = textwrap.dedent('''
    import sys, bpy, addon_utils
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    mod = "bl_ext.user_default.fullbody_capture"
    assert addon_utils.check(mod) == (True, True), addon_utils.check(mod)
    assert hasattr(bpy.types.Scene, "fullbody") and "FULLBODY_PT_capture" in dir(bpy.types)
    prefs = bpy.context.preferences.addons[mod].preferences
    from bl_ext.user_default.fullbody_capture import preferences, runtime_setup, _runtime
    # the runtime is the copy shipped inside the extension, numpy-only modules only
    assert _runtime.RUNTIME_PATH.endswith("fullbody_capture"), _runtime.RUNTIME_PATH
    assert "torch" not in sys.modules and "cv2" not in sys.modules and "mediapipe" not in sys.modules
    assert "user_default" in str(preferences.default_venv_dir())
    assert (runtime_setup.requirements_dir() / "constraints.txt").is_file()
    # a capture without a set-up runtime: a clear message, nothing pip-installed into Blender
    bpy.context.scene.fullbody.source_type = "CAMERA"
    try:
        bpy.ops.fullbody.capture_video()
        raise AssertionError("capture_video ran without a runtime")
    except RuntimeError as e:
        assert "Set up runtime" in str(e), e
    addon_utils.disable(mod)
    assert addon_utils.check(mod)[1] is False
    assert not hasattr(bpy.types.Scene, "fullbody") and "FULLBODY_PT_capture" not in dir(bpy.types)
    print("INSTALL-OK")
''')


def test_manifest_is_a_valid_extension_manifest():
    m = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert m["schema_version"] == "1.0.0" and m["id"] == "fullbody_capture" and m["type"] == "add-on"
    assert m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(m["permissions"]) == {"files", "camera"} and all(m["permissions"].values())
    assert tuple(int(x) for x in m["blender_version_min"].split(".")) >= (4, 2, 0)


def test_built_zip_installs_enables_and_unregisters_cleanly(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    zips = list(tmp_path.glob("fullbody_capture-*.zip"))
    assert len(zips) == 1
    names = set(zipfile.ZipFile(zips[0]).namelist())
    assert {"blender_manifest.toml", "__init__.py", "axes.py", "model_runtime/core/capture_file.py",
            "model_runtime/core/protocol.py", "requirements/runtime.txt", "requirements/constraints.txt"} <= names
    assets = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "model_runtime" / "assets").glob("*.npz"))
    assert set(assets) <= names, "built-in model assets missing from the zip"
    assert not any("__pycache__" in n for n in names)
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLENDER_")}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "blender_user")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, str(script), str(zips[0])], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0 and "INSTALL-OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "blender_user" / "extensions" / "user_default" / "fullbody_capture" / "__init__.py").exists()
