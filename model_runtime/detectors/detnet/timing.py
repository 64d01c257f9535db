"""Runtime per DetNet module (like Table 1), for each width preset / Table 6 variant.

``python -m model_runtime.detectors.detnet.timing [--sizes small base] [--variants both supp body]
[--input-size 256] [--batch 1] [--device cpu] [--repeat 30] [--json]``

Times the modules one after the other as :meth:`DetNet.forward` runs them (eval mode, no grad;
fp16 autocast and CUDA synchronisation on CUDA): MainFeatNet (with the 4x downscale),
BasicBody-PoseNet, ExtBody-PoseNet + heat-maps, Eq. 6 window, body-feature crops + conv,
SuppFeatNet (crops included), Hand-PoseNets, decode.  Speed does not depend on the weights'
values, so freshly initialised networks of each configuration are timed (``--weights`` times a file).
Median milliseconds per call over ``--repeat`` calls after 3 warm-up calls.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from .config import DetNetConfig
from .crop import crop
from .decode import decode
from .network import DetNet, DetNetOutput
from .posenet import PoseMaps

MODULES = ("main_feat", "basic_posenet", "ext_posenet_heat", "window_eq6", "body_features", "supp_feat",
           "hand_posenets", "decode")


def time_modules(net: DetNet, batch: int, device: str, repeat: int) -> dict[str, float]:
    """Median ms per module for ``batch`` images on ``device``; also ``total`` (sum of the medians)
    and ``forward`` (one :meth:`DetNet.forward` + decode call, timed as a whole)."""
    cfg = net.config
    S, m = cfg.input_size, cfg.hand_map
    cuda = str(device).startswith("cuda")
    x = torch.rand(batch, 3, S, S, device=device)
    att = torch.ones(batch, device=device)
    times: dict[str, list[float]] = {k: [] for k in MODULES + ("forward",)}

    def tick():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
        for it in range(repeat + 3):
            t = [tick()]
            low = F.interpolate(x - 0.5, scale_factor=0.25, mode="bilinear", align_corners=False, antialias=True)
            feat = net.main(low); t.append(tick())
            basic = net.basic(feat); fstar = torch.cat([feat, basic.flat()], 1); t.append(tick())
            ext = net.ext(fstar); heat = net.heat(fstar); t.append(tick())
            boxes, mass, fbox, fmass = net.locate(heat); t.append(tick())
            index = torch.arange(batch, device=device).repeat_interleave(2)
            flat = boxes.reshape(2 * batch, 3).to(x.dtype)
            parts = []
            if net.body_feat is not None:
                parts.append(net.body_feat(crop(fstar, index, flat, m, float(S))))
            t.append(tick())
            if net.supp is not None:
                right = torch.arange(2 * batch, device=device) % 2 == 1
                s = net.supp(crop(x - 0.5, index, flat, 2 * m, float(S), flip=right))
                parts.append(torch.where(right[:, None, None, None], s.flip(-1), s))
            t.append(tick())
            a = att.repeat_interleave(2)[:, None, None, None].expand(2 * batch, 1, m, m).to(parts[0].dtype)
            xin = torch.cat(parts + [a], 1).reshape(batch, 2, -1, m, m)
            maps = [net.hand_nets[k](xin[:, k]) for k in range(2)]
            hands = PoseMaps(*(torch.stack([p, q], 1) for p, q in zip(*maps))); t.append(tick())
            decode(DetNetOutput(basic, ext, heat, hands, boxes, mass, fbox, fmass), cfg); t.append(tick())
            decode(net(x, att), cfg); t.append(tick())
            if it >= 3:
                for k, a_, b_ in zip(MODULES, t[:-2], t[1:-1]):
                    times[k].append((b_ - a_) * 1000)
                times["forward"].append((t[-1] - t[-2]) * 1000)
    med = {k: float(torch.tensor(v).median()) for k, v in times.items()}
    med["total"] = sum(med[k] for k in MODULES)
    return med


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_runtime.detectors.detnet.timing", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["small", "base"], choices=["small", "base"])
    p.add_argument("--variants", nargs="+", default=["both", "supp", "body"], choices=["both", "supp", "body"])
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--weights", default=None, help="time this weights file instead of fresh networks")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    if args.weights:
        from .weights import load_weights

        nets = [load_weights(args.weights, args.device)[0]]
    else:
        nets = [DetNet(DetNetConfig(size=s, hand_features=v, input_size=args.input_size)).to(args.device).eval()
                for s in args.sizes for v in args.variants]
    for net in nets:
        cfg = net.config
        res = time_modules(net, args.batch, args.device, args.repeat)
        rows.append({"size": cfg.size, "hand_features": cfg.hand_features, "input_size": cfg.input_size,
                     "params": sum(q.numel() for q in net.parameters()), **{k: round(v, 2) for k, v in res.items()}})
    meta = {"device": args.device, "threads": args.threads, "batch": args.batch,
            "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}))
    else:
        cols = ["size", "hand_features", "params", *MODULES, "total", "forward"]
        print(" | ".join(cols))
        for r in rows:
            print(" | ".join(str(r[c]) for c in cols))
        print(meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
