"""Network outputs -> keypoints in px of the network input I_h (pure function, batched, any device)."""
from __future__ import annotations

from typing import NamedTuple

import torch

from .config import DetNetConfig
from .crop import crop_to_image
from .network import DetNetOutput
from .posenet import read_at_argmax, subpixel_peak
from .targets import cells_to_px


class Decoded(NamedTuple):
    """Keypoints of N images (px of I_h, metres).

    Attributes:
        body_xy: ``(N, 24, 2)`` px; body_conf: ``(N, 24)`` keypoint-map peak clipped to [0, 1];
        body_3d: ``(N, 24, 3)`` metres, pelvis-relative (camera axes).
        hand_xy: ``(N, 2, 21, 2)`` px; hand_conf: ``(N, 2, 21)``; hand_3d: ``(N, 2, 21, 3)`` metres,
            wrist-relative; hand_score: ``(N, 2)`` peak of H_l / H_r clipped to [0, 1].
        face_box: ``(N, 4)`` x, y, w, h px; face_score: ``(N,)`` peak of H_f clipped to [0, 1].
        hand_boxes: ``(N, 2, 3)`` the crop boxes (cx, cy, side) px.
    """

    body_xy: torch.Tensor
    body_conf: torch.Tensor
    body_3d: torch.Tensor
    hand_xy: torch.Tensor
    hand_conf: torch.Tensor
    hand_3d: torch.Tensor
    hand_score: torch.Tensor
    face_box: torch.Tensor
    face_score: torch.Tensor
    hand_boxes: torch.Tensor


def decode(out: DetNetOutput, config: DetNetConfig) -> Decoded:
    """2D from the (sub-cell) peak of K, 3D from L at the argmax of K (:func:`read_at_argmax`)."""
    K = torch.cat([out.basic.K, out.ext.K], 1).float()
    L = torch.cat([out.basic.L, out.ext.L], 1).float()
    cells, peak = subpixel_peak(K)
    body_3d = read_at_argmax(K, L)
    body_3d = body_3d - body_3d[:, :1]
    n, _, _, m, _ = out.hands.K.shape
    hK = out.hands.K.float().reshape(n * 2, 21, m, m)
    hcells, hpeak = subpixel_peak(hK)
    hxy = crop_to_image(cells_to_px(hcells, 1.0), out.hand_boxes.float().reshape(n * 2, 3), float(m))
    h3d = read_at_argmax(hK, out.hands.L.float().reshape(n * 2, 21, 3, m, m)) / config.hand_units
    h3d = h3d - h3d[:, :1]
    heat_peak = out.heat.float().flatten(2).amax(2).clamp(0, 1)                 # (N, 3)
    fb = out.face_box.float()
    face_box = torch.stack([fb[:, 0] - fb[:, 2] / 2, fb[:, 1] - fb[:, 2] / 2, fb[:, 2], fb[:, 2]], 1)
    return Decoded(cells_to_px(cells, config.body_stride), peak.clamp(0, 1), body_3d,
                   hxy.reshape(n, 2, 21, 2), hpeak.clamp(0, 1).reshape(n, 2, 21), h3d.reshape(n, 2, 21, 3),
                   heat_peak[:, :2], face_box, heat_peak[:, 2], out.hand_boxes.float())
