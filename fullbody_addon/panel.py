"""The 'Capture' tab of the 3D viewport sidebar."""
from __future__ import annotations

import bpy

from . import avatar, session


class FULLBODY_PT_capture(bpy.types.Panel):
    bl_label = "Full Body Capture"
    bl_idname = "FULLBODY_PT_capture"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Capture"

    def draw(self, context):
        layout = self.layout
        s = context.scene.fullbody
        st = context.window_manager.fullbody_status

        box = layout.box()
        box.label(text="Source", icon="FILE_MOVIE")
        box.prop(s, "source_type", text="")
        if s.source_type == "VIDEO":
            box.prop(s, "video_path", text="")
        elif s.source_type == "FOLDER":
            box.prop(s, "image_folder", text="")
        else:
            box.prop(s, "camera_index")
        row = box.row(align=True)
        row.prop(s, "frame_start")
        row.prop(s, "frame_end")

        box = layout.box()
        box.label(text="Models", icon="OUTLINER_OB_ARMATURE")
        box.prop(s, "body_model")
        if s.body_model == "SMPLH":
            box.prop(s, "smplh_path", text="")
        box.prop(s, "face_model")
        if s.face_model == "BFM":
            box.prop(s, "bfm_path", text="")

        box = layout.box()
        box.label(text="Options", icon="PREFERENCES")
        box.prop(s, "smoothing", slider=True)
        row = box.row(align=True)
        row.prop(s, "hands", toggle=True)
        row.prop(s, "face", toggle=True)
        row.prop(s, "feet", toggle=True)
        row.prop(s, "root_translation", toggle=True)
        row = box.row()
        row.prop(s, "key_unseen")
        row.prop(s, "neutral_face")
        row = box.row()
        row.prop(s, "lock_feet")
        row.prop(s, "ground_plane")
        box.prop(s, "fps")
        box.prop(s, "output_dir")

        col = layout.column(align=True)
        col.operator("fullbody.create_avatar", icon="OUTLINER_OB_ARMATURE")
        running = session.active_job() is not None
        row = col.row(align=True)
        row.enabled = not running
        row.operator("fullbody.capture_video", icon="REC")
        row.operator("fullbody.live_capture", icon="CAMERA_DATA")
        if running:
            col.progress(factor=st.progress / 100.0, text=st.message[:60] or "running")
            row = col.row(align=True)
            if st.live:
                row.prop(st, "recording", toggle=True, icon="RADIOBUT_ON" if st.recording else "RADIOBUT_OFF")
                row.label(text=f"latency {st.latency_ms:.0f} ms")
            row.operator("fullbody.stop_capture", icon="CANCEL")
        elif st.message:
            col.label(text=st.message[:80], icon="INFO")
        if st.error:
            err = layout.box()
            err.alert = True
            for i, line in enumerate(_wrap(st.error, 48)[:6]):
                err.label(text=line, icon="ERROR" if i == 0 else "BLANK1")

        col = layout.column(align=True)
        col.operator("fullbody.import_capture", icon="IMPORT")
        ex = col.row(align=True)
        ex.enabled = avatar.find_avatar(context) is not None
        for preset in ("BLENDER", "UNITY", "UNREAL"):
            ex.operator("fullbody.export_fbx", text=preset.title()).preset = preset
        if st.health:
            box = layout.box()
            for line in st.health.split(" | "):
                box.label(text=line[:80])


def _wrap(text: str, width: int) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return out + ([line] if line else [])


CLASSES = (FULLBODY_PT_capture,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
