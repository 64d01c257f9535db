"""The batch the synthetic engine produces (:class:`SynthBatch`) and batch utilities."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

#: tensor fields of :class:`SynthBatch`, in order (``params``/``tags`` are dicts of tensors)
TENSOR_FIELDS = ("image", "K", "body_2d", "body_3d", "body_vis", "hand_2d", "hand_3d", "hand_vis",
                 "face_box", "face_68", "face_68_3d", "face_68_vis", "face_468", "mask", "hand_crop",
                 "hand_box", "face_crop", "face_crop_box", "index")


@dataclass
class SynthBatch:
    """``N`` rendered images with their exact labels (torch tensors on one device).

    Coordinates: pixels with (0, 0) at the top-left corner of the top-left pixel (COCO);
    camera space x right, y down, z forward, metres.  Orders: see :mod:`model_runtime.synth`.

    image ``(N, 3, H, W)`` float32 RGB in [0, 1]; K ``(N, 3, 3)``;
    body_2d ``(N, 24, 2)`` px, body_3d ``(N, 24, 3)`` camera space, body_vis ``(N, 24)`` bool;
    hand_2d ``(N, 2, 21, 2)`` [left, right] px, hand_3d ``(N, 2, 21, 3)``, hand_vis ``(N, 2, 21)``;
    face_box ``(N, 4)`` x0, y0, x1, y1 px (box of the 68 landmarks); face_68 ``(N, 68, 2)``,
    face_68_3d ``(N, 68, 3)``, face_68_vis ``(N, 68)``; face_468 ``(N, 468, 2)``;
    mask ``(N, H, W)`` bool (visible person pixels, occluders excluded);
    hand_crop ``(N, 2, 3, h, h)`` RGB [0, 1] rendered at crop resolution inside hand_box
    ``(N, 2, 4)`` x0, y0, x1, y1 image px (square); face_crop ``(N, 3, f, f)`` inside
    face_crop_box ``(N, 4)``; index ``(N,)`` long sample index (the seed stream position);
    params: dict of ``(N, ...)`` tensors that made each image; tags: dict of ``(N,)`` bool
    hard-case tags (``hand_small``, ``limbs_out_of_frame``, ``hand_occluded``, ``truncated``,
    ``occluded``, ``blurred``); encoded: the compressed streams the CPU path made, ``{"image" |
    "hand_crop" | "face_crop": [bytes or None per image, flattened over the leading axes]}``: a
    JPEG whose decoding is that image (shards store it instead of encoding again); empty after
    selection or on other devices.
    A point ``p`` in image px maps into a crop with box ``b`` of size ``s`` px as
    ``(p - b[:2]) * s / (b[2] - b[0])``.
    """

    image: torch.Tensor
    K: torch.Tensor
    body_2d: torch.Tensor
    body_3d: torch.Tensor
    body_vis: torch.Tensor
    hand_2d: torch.Tensor
    hand_3d: torch.Tensor
    hand_vis: torch.Tensor
    face_box: torch.Tensor
    face_68: torch.Tensor
    face_68_3d: torch.Tensor
    face_68_vis: torch.Tensor
    face_468: torch.Tensor
    mask: torch.Tensor
    hand_crop: torch.Tensor
    hand_box: torch.Tensor
    face_crop: torch.Tensor
    face_crop_box: torch.Tensor
    index: torch.Tensor
    params: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    encoded: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def to(self, device) -> "SynthBatch":
        kw = {n: getattr(self, n).to(device) for n in TENSOR_FIELDS}
        kw["params"] = {k: v.to(device) for k, v in self.params.items()}
        kw["tags"] = {k: v.to(device) for k, v in self.tags.items()}
        return SynthBatch(**kw, encoded=self.encoded)

    def __getitem__(self, sel) -> "SynthBatch":
        """Select samples (slice, index tensor or bool mask) from every field."""
        kw = {n: getattr(self, n)[sel] for n in TENSOR_FIELDS}
        kw["params"] = {k: v[sel] for k, v in self.params.items()}
        kw["tags"] = {k: v[sel] for k, v in self.tags.items()}
        return SynthBatch(**kw)


def concat(batches: list[SynthBatch]) -> SynthBatch:
    """Concatenate batches along the sample axis."""
    kw = {n: torch.cat([getattr(b, n) for b in batches]) for n in TENSOR_FIELDS}
    kw["params"] = {k: torch.cat([b.params[k] for b in batches]) for k in batches[0].params}
    kw["tags"] = {k: torch.cat([b.tags[k] for b in batches]) for k in batches[0].tags}
    kw["encoded"] = {k: [x for b in batches for x in b.encoded[k]] for k in batches[0].encoded
                     if all(k in b.encoded for b in batches)}
    return SynthBatch(**kw)


assert tuple(f.name for f in fields(SynthBatch))[: len(TENSOR_FIELDS)] == TENSOR_FIELDS
