"""DetNet losses, Eq. 7-13, with per-sample part weights (lambda = 0 where a sample lacks the labels).

Batch labels (``labels`` dict of tensors, N samples, S = input side in px):

* ``body_2d`` ``(N, 24, 2)`` px, ``body_vis`` ``(N, 24)`` 0/1, ``body_3d`` ``(N, 24, 3)`` metres
  pelvis-relative camera axes, ``body_has3d`` ``(N,)`` 0/1;
* ``hand_2d`` ``(N, 2, 21, 2)`` px [left, right], ``hand_vis`` ``(N, 2, 21)``, ``hand_3d``
  ``(N, 2, 21, 3)`` metres wrist-relative, ``hand_has3d`` ``(N, 2)``;
* ``face_2d`` ``(N, 68, 2)`` px, ``face_vis`` ``(N, 68)``;
* ``attention`` ``(N,)``: 1 when a body is in the image (0 for hand-only images, Fig. 6).

A part whose labels are all missing in a sample has lambda = 0 for that sample: its loss and so
its gradient vanish.  2D-only samples have w_d = w_l = 0 (Sec. 3.2.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import BODY_PARENTS, HAND_PARENTS, DetNetConfig
from .crop import image_to_crop
from .network import DetNetOutput
from .posenet import PoseMaps
from .targets import bone_directions, boxes_from_heatmaps, gaussian_maps, part_heatmap, px_to_cells

MIN_HAND_POINTS = 8
"""A hand counts as labelled (lambda_h > 0, box from its heat-map) with at least this many keypoints."""


@dataclass(frozen=True)
class LossWeights:
    """w_k, w_d, w_l of Eq. 7; lambda_b, lambda_h, lambda_f of Eq. 11; Gaussian sigmas in map cells."""

    w_k: float = 1.0
    w_d: float = 1.0
    w_l: float = 2.0
    lam_b: float = 1.0
    lam_h: float = 1.0
    lam_f: float = 1.0
    sigma_body: float = 1.0
    sigma_hand: float = 1.0
    k_fg: float = 9.0
    """Eq. 8, 12, 13 weight each pixel by ``1 + k_fg * GT`` (0 = the paper's plain Frobenius norm).  The
    Gaussians cover ~3 of 1024 cells, so the plain norm first learns to predict zeros everywhere; up-weighting
    the peaks makes the short CPU runs learn the peaks within a few hundred steps."""


def posenet_loss(maps: PoseMaps, k_gt: torch.Tensor, vis: torch.Tensor, d_gt: torch.Tensor, l_gt: torch.Tensor,
                 has3d: torch.Tensor, w: LossWeights) -> dict[str, torch.Tensor]:
    """Eq. 7-10 per sample.

    Args:
        maps: predictions, K ``(B, K, h, w)``, D/L ``(B, K, 3, h, w)``.
        k_gt: ``(B, K, h, w)``; vis: ``(B, K)`` (unlabelled keypoints do not count in Eq. 8);
        d_gt, l_gt: ``(B, K, 3)`` tiled over the map here; has3d: ``(B,)`` 0 -> w_d = w_l = 0.
    Returns:
        ``{"k", "d", "l"}`` each ``(B,)`` (already multiplied by w_k, w_d, w_l).
    """
    kmap = ((k_gt - maps.K) ** 2 * (1 + w.k_fg * k_gt) * vis[..., None, None]).sum((1, 2, 3))
    kw = (k_gt * vis[..., None, None])[:, :, None]                              # (B, K, 1, h, w)
    dmap = ((kw * (d_gt[..., None, None] - maps.D)) ** 2).sum((1, 2, 3, 4))
    lmap = ((kw * (l_gt[..., None, None] - maps.L)) ** 2).sum((1, 2, 3, 4))
    return {"k": w.w_k * kmap, "d": w.w_d * dmap * has3d, "l": w.w_l * lmap * has3d}


def gt_hand_boxes(labels: dict, config: DetNetConfig, w: LossWeights) -> torch.Tensor:
    """``(N, 2, 3)`` crop boxes from the hand labels through the same Eq. 6 window the network uses
    (on H^GT), so training crops look like inference crops."""
    h = config.body_map
    cells = px_to_cells(labels["hand_2d"], config.body_stride)
    H = part_heatmap(cells, labels["hand_vis"], h, h, w.sigma_body)              # (N, 2, h, h)
    return boxes_from_heatmaps(H, config.window_t, config.body_stride, config.box_scale, config.hand_min_box)


def detnet_loss(out: DetNetOutput, labels: dict, config: DetNetConfig,
                w: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 11: lambda_b L_p^b + lambda_h (L_p^lh + L_p^rh + L_h) + lambda_f L_f.

    ``out.hand_boxes`` must be the boxes the hand maps were cropped with (the labels are mapped
    into those crops).
    Returns:
        total (scalar, mean over the batch) and the per-part means (detached) for logging:
        ``body_k, body_d, body_l, hand_k, hand_d, hand_l, heat_hand, heat_face``.
    """
    n = labels["body_2d"].shape[0]
    h = config.body_map
    dt = out.heat.dtype
    # ---- body: basic and extended PoseNets (Eq. 7 on the 24 keypoints) ----
    bvis = labels["body_vis"].to(dt)
    bcells = px_to_cells(labels["body_2d"], config.body_stride)
    k_gt = gaussian_maps(bcells, bvis, h, h, w.sigma_body)
    d_gt = bone_directions(labels["body_3d"], BODY_PARENTS)
    body = PoseMaps(*(torch.cat([a, b], 1) for a, b in zip(out.basic, out.ext)))
    lb = posenet_loss(body, k_gt, bvis, d_gt, labels["body_3d"], labels["body_has3d"].to(dt), w)
    lam_b = w.lam_b * (bvis.sum(1) > 0).to(dt)
    # ---- hands: Hand-PoseNets in the crop frame + heat-maps (Eq. 12) ----
    hvis = labels["hand_vis"].to(dt)                                             # (N, 2, 21)
    has_hand = (hvis.sum(-1) >= MIN_HAND_POINTS).to(dt)                          # (N, 2)
    m = config.hand_map
    hxy = image_to_crop(labels["hand_2d"].reshape(n * 2, 21, 2), out.hand_boxes.reshape(n * 2, 3), float(m))
    hk_gt = gaussian_maps(hxy - 0.5, hvis.reshape(n * 2, 21), m, m, w.sigma_hand)
    h3d = labels["hand_3d"].reshape(n * 2, 21, 3) * config.hand_units
    flat = PoseMaps(out.hands.K.reshape(n * 2, 21, m, m), out.hands.D.reshape(n * 2, 21, 3, m, m),
                    out.hands.L.reshape(n * 2, 21, 3, m, m))
    lh = posenet_loss(flat, hk_gt, hvis.reshape(n * 2, 21), bone_directions(h3d, HAND_PARENTS), h3d,
                      labels["hand_has3d"].reshape(n * 2).to(dt), w)
    lh = {k: v.reshape(n, 2) * has_hand for k, v in lh.items()}
    H_gt = part_heatmap(px_to_cells(labels["hand_2d"], config.body_stride), hvis, h, h, w.sigma_body)
    heat_h = ((H_gt - out.heat[:, :2]) ** 2 * (1 + w.k_fg * H_gt)).sum((2, 3)) * has_hand              # (N, 2)
    lam_h = w.lam_h * (has_hand.sum(1) > 0).to(dt)
    # ---- face heat-map (Eq. 13) ----
    fvis = labels["face_vis"].to(dt)
    Hf_gt = part_heatmap(px_to_cells(labels["face_2d"], config.body_stride), fvis, h, h, w.sigma_body)
    lam_f = w.lam_f * (fvis.sum(1) > 0).to(dt)
    heat_f = ((Hf_gt - out.heat[:, 2]) ** 2 * (1 + w.k_fg * Hf_gt)).sum((1, 2))
    parts = {
        "body_k": lam_b * lb["k"], "body_d": lam_b * lb["d"], "body_l": lam_b * lb["l"],
        "hand_k": lam_h * lh["k"].sum(1), "hand_d": lam_h * lh["d"].sum(1), "hand_l": lam_h * lh["l"].sum(1),
        "heat_hand": lam_h * heat_h.sum(1), "heat_face": lam_f * heat_f,
    }
    total = sum(v.sum() for v in parts.values()) / n
    return total, {k: v.detach().sum() / n for k, v in parts.items()}
