"""The synthetic engine (:mod:`model_runtime.synth`, issue 12) as a DetNet training source.

* :func:`synth_samples`: one ``SynthBatch`` -> DetNet samples ``(image_rgb uint8, labels)`` (labels as
  in :mod:`.data`): body and hand 3D made root-relative, a keypoint counts as labelled when it lies
  inside the image (hidden ones too: DetNet must place occluded joints, as the teacher does);
* :class:`SynthShards`: the shards of ``python -m model_runtime synth --out DIR`` held in memory;
* :class:`SynthStream`: images generated on the fly with ``synth.generate`` on the training device
  (the GPU when one is lent), ``chunk`` at a time, each sample used once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import InputMissingError
from .data import empty_labels


def synth_samples(batch) -> list[tuple[np.ndarray, dict]]:
    """``SynthBatch`` (any device) -> list of N samples on the CPU."""
    img = (batch.image.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    h, w = img.shape[1:3]
    b2, b3 = batch.body_2d.float().cpu().numpy(), batch.body_3d.float().cpu().numpy()
    h2, h3 = batch.hand_2d.float().cpu().numpy(), batch.hand_3d.float().cpu().numpy()
    f2 = batch.face_68.float().cpu().numpy()

    def inside(p):
        return ((p[..., 0] >= 0) & (p[..., 0] < w) & (p[..., 1] >= 0) & (p[..., 1] < h)).astype(np.float32)

    out = []
    for i in range(len(img)):
        lab = empty_labels()
        lab["body_2d"], lab["body_vis"] = b2[i], inside(b2[i])
        lab["body_3d"], lab["body_has3d"] = b3[i] - b3[i, :1], np.float32(1.0)
        lab["hand_2d"], lab["hand_vis"] = h2[i], inside(h2[i])
        lab["hand_3d"], lab["hand_has3d"] = h3[i] - h3[i, :, :1], np.ones(2, np.float32)
        lab["face_2d"], lab["face_vis"] = f2[i], inside(f2[i])
        out.append((img[i], {k: np.asarray(v, np.float32) for k, v in lab.items()}))
    return out


class SynthShards:
    """All samples of a shard folder, in memory; ``len``, ``[i]`` -> sample."""

    def __init__(self, folder: Path):
        from ...synth.shards import read_shards

        if not Path(folder).is_dir():
            raise InputMissingError(f"{folder}: synth shard folder not found (python -m model_runtime synth --out DIR)")
        self.samples = [s for b in read_shards(folder) for s in synth_samples(b)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]


class SynthStream:
    """Endless on-the-fly synthetic samples: ``[i]`` ignores ``i`` and returns the next fresh sample,
    generating ``chunk`` images at a time on ``device`` (stream positions advance, nothing repeats)."""

    def __init__(self, device: str = "cpu", seed: int = 0, chunk: int = 64, size: tuple[int, int] = (384, 512),
                 pose_bank: str | None = None):
        from ...synth import SynthConfig

        self.config = SynthConfig(width=size[0], height=size[1], pose_bank=pose_bank)
        self.device, self.seed, self.chunk = device, seed, chunk
        self.start, self.buffer = 0, []

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, i: int):
        if not self.buffer:
            from ...synth import generate

            self.buffer = synth_samples(generate(self.config, seed=self.seed, count=self.chunk,
                                                 device=self.device, start=self.start))
            self.start += self.chunk
        return self.buffer.pop()
