"""Add-on preferences: where the runtime's Python is, and its setup/health."""
from __future__ import annotations

import os
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import runtime_setup


def addon_package() -> str:
    return __package__


def prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(addon_package())
    return addon.preferences if addon else None


def default_venv_dir() -> Path:
    """``<extension user folder>/runtime-venv`` (a legacy add-on falls back to the config folder)."""
    try:
        return Path(bpy.utils.extension_path_user(addon_package(), path="runtime-venv", create=False))
    except ValueError:  # not installed as an extension (repository checkout)
        return Path(bpy.utils.user_resource("CONFIG", path="fullbody_capture", create=False)) / "runtime-venv"


#: environment variable naming the runtime's interpreter; it wins over the preferences (a studio's
#: shared CUDA environment, a render farm, the test suite)
RUNTIME_PYTHON_ENV = "FULLBODY_RUNTIME_PYTHON"


def runtime_python(context=None) -> str:
    """The interpreter captures run with: ``$FULLBODY_RUNTIME_PYTHON``, else the one chosen in the
    preferences, else the set-up venv's (which may not exist yet)."""
    if os.environ.get(RUNTIME_PYTHON_ENV):
        return os.environ[RUNTIME_PYTHON_ENV]
    p = prefs(context)
    if p is not None and p.interpreter_mode == "CUSTOM":
        return bpy.path.abspath(p.python_path)
    venv = Path(p.venv_dir) if p is not None and p.venv_dir else default_venv_dir()
    return str(runtime_setup.venv_python(venv))


class FULLBODY_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    interpreter_mode: EnumProperty(name="Runtime", items=[
        ("VENV", "Own Environment", "A virtual environment created by 'Set up runtime' in the extension's user folder"),
        ("CUSTOM", "Existing Python", "An interpreter that already has the runtime requirements (e.g. a CUDA environment)"),
    ], default="VENV")
    venv_dir: StringProperty(name="Environment Folder", subtype="DIR_PATH",
                             description="Empty: the extension's user folder")
    python_path: StringProperty(name="Python", subtype="FILE_PATH")
    device: EnumProperty(name="Device", items=[
        ("auto", "Automatic", "CUDA when available, else CPU"),
        ("cpu", "CPU", ""), ("cuda", "CUDA", ""),
    ], default="auto")

    def draw(self, context):
        layout = self.layout
        st = context.window_manager.fullbody_status
        layout.prop(self, "interpreter_mode", expand=True)
        if self.interpreter_mode == "CUSTOM":
            layout.prop(self, "python_path")
        else:
            layout.prop(self, "venv_dir")
            row = layout.row()
            row.enabled = not st.setup_running
            row.operator("fullbody.setup_runtime", icon="CONSOLE")
            if st.setup_running or st.setup_message:
                col = layout.column(align=True)
                if st.setup_running:
                    col.progress(factor=st.setup_progress / 100.0, text=st.setup_message[:80])
                    col.operator("fullbody.setup_runtime_cancel", icon="CANCEL")
                else:
                    col.label(text=st.setup_message[:120])
                log = bpy.data.texts.get("fullbody_setup_log")
                if log is not None:
                    for line in log.as_string().splitlines()[-8:]:
                        col.label(text=line[:120])
        layout.prop(self, "device")
        layout.label(text=f"Interpreter: {runtime_python(context)}")
        row = layout.row()
        row.operator("fullbody.health_check", icon="CHECKMARK")
        for line in st.health.split(" | ") if st.health else ():
            layout.label(text=line)


CLASSES = (FULLBODY_AP_preferences,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
