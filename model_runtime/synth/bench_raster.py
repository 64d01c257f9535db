"""Rasteriser evidence for docs/synthetic.md: CPU seconds per 768x1024 image of the merged avatar.

    python -m model_runtime.synth.bench_raster [--count 8]

Compares, on the same projected meshes (posed people as the engine places them):
``face.render.rasterize`` (one mesh, float64, per-candidate gathers), the synth rasteriser
without back-face culling and with it (tiled, float32, batched).  Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import resource


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    import torch

    from ..face.render import rasterize
    from . import labels
    from .config import SynthConfig
    from .engine import generate
    from .raster import rasterize_batch

    ap = argparse.ArgumentParser(prog="python -m model_runtime.synth.bench_raster")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = SynthConfig(pose_source="random", truncation=False, p_far=0.0)
    got = []
    orig = labels.raster

    def spy(px, faces, h, w, cull=0):
        if (h, w) == (cfg.height, cfg.width):
            got.append((px, faces))
        return orig(px, faces, h, w, cull)

    labels.raster = spy
    try:
        generate(cfg, 0, args.count)
    finally:
        labels.raster = orig
    px = torch.cat([p for p, _ in got])
    faces = got[0][1]
    out = {"images": int(px.shape[0]), "size": f"{cfg.width}x{cfg.height}", "threads": args.threads}
    t = _cpu()
    for i in range(px.shape[0]):                 # the reference draws one mesh per call
        rasterize(px[i].double(), faces, cfg.height, cfg.width)
    out["face_render_rasterize_cpu_s_per_image"] = round((_cpu() - t) / px.shape[0], 4)
    for cull in (0, 1):
        t = _cpu()
        r = rasterize_batch(px, faces, cfg.height, cfg.width, cull=cull)
        out[f"synth_raster_cull{cull}_cpu_s_per_image"] = round((_cpu() - t) / px.shape[0], 4)
    out["covered_pixels_per_image"] = int(r.pix.numel() // px.shape[0])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
