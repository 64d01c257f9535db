"""``python -m model_runtime synth``: write shards of synthetic samples, or a preview grid.

    python -m model_runtime synth --out DIR --count N --seed S [--shard-size 64] [--workers 2]
    python -m model_runtime synth preview --out grid.png [--count 8] [--seed S]

Variety switches: ``--no-<name>`` for each :class:`model_runtime.synth.SynthConfig` switch
(``--no-clothing``, ``--no-real-background``, ...).  ``--workers`` renders shards in parallel
processes (each with ``--threads`` torch threads).  Prints one JSON line with the count, the
wall time, images/s and CPU seconds per image (all processes: on a shared machine the wall
time depends on the other jobs, the CPU time much less).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..core.options import int_at_least


_positive = int_at_least(1)
_seed = int_at_least(0)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 768x1024, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"width and height must be in [16, 8192], got {text!r}")
    return w, h


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The :class:`SynthConfig` options shared by ``synth`` and ``eval synth``."""
    from ..synth.config import SynthConfig

    parser.add_argument("--size", type=_size, default=(768, 1024), help="image size WxH (default 768x1024)")
    parser.add_argument("--hand-crop", type=_positive, default=256, help="hand crop side in px (default 256)")
    parser.add_argument("--face-crop", type=_positive, default=256, help="face crop side in px (default 256)")
    parser.add_argument("--pose-source", choices=("mocap", "mocap-heldout", "random"), default=None,
                        help="body poses: retargeted MoCap (default), its held-out actor, or random")
    parser.add_argument("--mocap-sets", default="hdm05,bandai_namco",
                        help="comma-separated MoCap folders (hdm05: CC BY-SA 3.0, bandai_namco: CC BY-NC 4.0)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder with mocap/ and realdata/ (default ../shared/data)")
    parser.add_argument("--body", default="builtin", help="body model: builtin or an SMPL-H file")
    parser.add_argument("--face", default="builtin", help="face model: builtin or a BFM file")
    for name in SynthConfig().switches:
        parser.add_argument(f"--no-{name.replace('_', '-')}", dest=f"no_{name}", action="store_true",
                            help=f"switch off {name.replace('_', ' ')} variety")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, auto)")
    parser.add_argument("--threads", type=_positive, default=1, help="torch threads per process (default 1)")


def config_from_args(args: argparse.Namespace, **overrides):
    from ..synth.config import SynthConfig

    kw = {n: not getattr(args, f"no_{n}") for n in SynthConfig().switches}
    kw.update(width=args.size[0], height=args.size[1], hand_crop=args.hand_crop, face_crop=args.face_crop,
              body=args.body, face=args.face, data_root=None if args.data_root is None else str(args.data_root),
              mocap_sets=tuple(m.strip() for m in args.mocap_sets.split(",") if m.strip()))
    if args.pose_source is not None:
        kw["pose_source"] = args.pose_source
    kw.update(overrides)
    try:
        return SynthConfig(**kw)
    except ValueError as e:
        from ..core.options import OptionError

        raise OptionError("synth", str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("write", "preview", "bench"), default="write",
                        help="write shards (default), a preview grid PNG, or bench: render --count images "
                             "in batches of --shard-size without writing (throughput of on-the-fly generation)")
    parser.add_argument("--out", type=Path, default=None, help="shard folder (write) or .png file (preview)")
    parser.add_argument("--count", type=_positive, default=None, help="samples (default 64; preview 8)")
    parser.add_argument("--seed", type=_seed, default=0, help="stream seed (default 0)")
    parser.add_argument("--start", type=_seed, default=0, help="first sample index of the stream (default 0)")
    parser.add_argument("--shard-size", type=_positive, default=64, help="samples per shard (default 64)")
    parser.add_argument("--workers", type=_positive, default=1, help="parallel processes (default 1)")
    parser.add_argument("--columns", type=_positive, default=4, help="preview: samples per row (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing shards / preview file")
    add_config_arguments(parser)


def _check_png(path: Path, overwrite: bool) -> Path:
    """The preview's output file: :func:`model_runtime.core.capture_file.check_output` for a .png."""
    from ..core.capture_file import check_output

    return check_output(path, overwrite, suffix=".png", exists_note="")


def _write_shards(job) -> int:
    """Worker: render and write the shards ``job = (cfg, seed, device, threads, out, [(k, start, n)])``."""
    import torch

    from ..synth import generate
    from ..synth.shards import shard_name, write_shard

    cfg, seed, device, threads, out, items = job
    torch.set_num_threads(threads)
    cj = json.dumps(cfg.to_dict(), sort_keys=True)
    done = 0
    for k, start, n in items:
        b = generate(cfg, seed, n, device=device, start=start)
        write_shard(Path(out) / shard_name(k), b, cj, seed)
        done += n
    return done


def _bench(cfg, args, device: str) -> int:
    """Render ``--count`` images in batches of ``--shard-size`` (nothing written); one JSON line."""
    import resource

    import torch

    from ..evals.common import note
    from ..synth import generate

    generate(cfg, args.seed, 1, device=device, log=note)             # models, pose bank, warm-up
    count = args.count or 64
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for start in range(0, count, args.shard_size):
        b = generate(cfg, args.seed, min(args.shard_size, count - start), device=device, start=args.start + start)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"bench": count, "batch": args.shard_size, "seconds": round(wall, 2),
                      "images_per_s": round(count / wall, 3), "cpu_seconds_per_image": round(cpu / count, 3),
                      "device": device, "threads": args.threads, "size": f"{cfg.width}x{cfg.height}",
                      "last_batch": len(b)}))
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core.options import resolve_device
    from ..evals.common import note

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = config_from_args(args)
    if args.action == "bench":
        return _bench(cfg, args, device)
    if args.out is None:
        from ..core.options import OptionError

        raise OptionError("--out", f"is required for 'synth {args.action}'")
    if args.action == "preview":
        import cv2

        from ..synth import generate
        from ..synth.preview import grid

        out = _check_png(args.out, args.overwrite)
        b = generate(cfg, args.seed, args.count or 8, device=device, start=args.start, log=note)
        if not cv2.imwrite(str(out), grid(b, args.columns)):
            from ..core.errors import OutputError

            raise OutputError(f"{out}: cannot write the PNG")
        print(json.dumps({"preview": str(out), "count": len(b)}))
        return 0
    from ..synth.engine import context
    from ..synth.shards import check_output_dir

    out = check_output_dir(args.out, args.overwrite)
    count = args.count or 64
    context(cfg, device, log=note)                           # load models / pose bank once (and report errors early)
    items = [(k, args.start + s, min(args.shard_size, count - s)) for k, s in enumerate(range(0, count, args.shard_size))]
    import resource

    def cpu_seconds() -> float:
        r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(x.ru_utime + x.ru_stime for x in r)

    t0, c0 = time.perf_counter(), cpu_seconds()
    if args.workers == 1:
        done = _write_shards((cfg, args.seed, device, args.threads, str(out), items))
    else:
        import multiprocessing as mp

        jobs = [(cfg, args.seed, device, args.threads, str(out), items[w::args.workers]) for w in range(args.workers)]
        with mp.get_context("spawn").Pool(args.workers) as pool:
            done = sum(pool.map(_write_shards, jobs))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(json.dumps({"out": str(out), "count": done, "shards": len(items), "seconds": round(wall, 2),
                      "images_per_s": round(done / wall, 3), "cpu_seconds_per_image": round(cpu / done, 3),
                      "device": device, "workers": args.workers, "threads": args.threads,
                      "size": f"{cfg.width}x{cfg.height}"}))
    return 0
