"""DetNet (Zhou et al. 2021, Sec. 3.2): body, hand and face keypoint detection in one network.

Modules (find them by file name):

* :mod:`.config` keypoint sets, bone parents, width presets and the Table 6 switch;
* :mod:`.blocks` conv/ResNet blocks; :mod:`.posenet` PoseNet (K, D, L maps) and the 3D read at argmax;
* :mod:`.network` MainFeatNet, SuppFeatNet, BasicBody/ExtBody/Hand-PoseNets, the whole DetNet;
* :mod:`.window` Eq. 6 sliding window (integral image, vectorised); :mod:`.crop` RoI crops;
* :mod:`.targets` ground-truth maps; :mod:`.losses` Eq. 7-13; :mod:`.decode` maps -> keypoints;
* :mod:`.teacher` MediaPipe teacher labels; :mod:`.data` samples, augmentation, batches;
  :mod:`.train` the training loop; :mod:`.weights` weights files; :mod:`.timing` per-module runtime;
* :mod:`.detector` ``DetNetDetector``, registered as ``detnet`` in :data:`model_runtime.detectors.BACKENDS`.

This package imports torch; the registry imports it only when ``detnet`` is asked for.
"""
from .detector import DetNetDetector

__all__ = ["DetNetDetector"]
