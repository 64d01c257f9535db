"""Readers for official model files: SMPL-H (``.npz``/``.pkl``) and Basel face models (``.mat``).

``load_smplh`` -> :class:`~model_runtime.models.body_model.BodyModel` (``kind="smplh"``);
``load_bfm`` -> :class:`~model_runtime.models.face_model.FaceModel` (``kind="bfm"``).
Pickles are read by :mod:`.safe_pickle`, which never executes code.
"""
from .bfm import load_bfm
from .safe_pickle import safe_load_pickle
from .smplh import SMPLH_KEYPOINT_VERTICES, load_smplh

__all__ = ["load_bfm", "load_smplh", "safe_load_pickle", "SMPLH_KEYPOINT_VERTICES"]
