"""Full Body Capture: Blender extension for Zhou et al. (CVPR 2021) monocular full-body capture.

The capture itself runs in a separate Python (``model_runtime serve``, see
:mod:`.runtime_client`); this package only converts and drives Blender.  Module
map: :mod:`.axes` (the one axis conversion), :mod:`.convert` (pose_6d -> bone
channels, numpy), :mod:`.avatar_data` / :mod:`.avatar` (avatar arrays / Blender
objects), :mod:`.importer` (keyframes), :mod:`.runtime_client`,
:mod:`.runtime_setup`, :mod:`.session` (timer), :mod:`.operators`,
:mod:`.panel`, :mod:`.preferences`, :mod:`.properties`.
"""
from __future__ import annotations

from . import operators, panel, preferences, properties, session

_MODULES = (properties, preferences, operators, panel)


def register() -> None:
    for m in _MODULES:
        m.register()


def unregister() -> None:
    session.shutdown()
    for m in reversed(_MODULES):
        m.unregister()
