"""``python -m model_runtime eval synth``: score a detector on the fixed synthetic evaluation set.

The set: :data:`EVAL_COUNT` (500) images of :func:`model_runtime.synth.generate` with
:data:`EVAL_CONFIG` (default variety, body poses from the held-out MoCap actor) and
:data:`EVAL_SEED`; ``--count N`` scores the first N of them (a documented subset).  The
rendered images are cached as shards (``--cache``, default ``$FULLBODY_CACHE/synth_eval/<key>``)
so other detectors are scored on the same bytes without rendering again.

Scoring is that of ``eval coco-wholebody`` (:func:`model_runtime.evals.coco_wholebody.score`:
top-down on the person box enlarged by 25 %, PCK@0.1/0.2 of the longer box side and detection
rate per part) and of ``eval hand3d`` (wrist-aligned MPJPE and PA-MPJPE in mm of the 21 hand
points in camera axes, over detected hands), reported for all images and per hard-case tag
(``hand_small``: a hand under 40 px; ``limbs_out_of_frame``; ``hand_occluded``: 11+ of a hand's 21
keypoints in frame and hidden by another part or an occluder; ``truncated``;
``occluded``; ``blurred``; ``clean``: none of the first three).

Ground truth in COCO-WholeBody order: body 17 and feet 6 from the 24 body keypoints (the small
toes are not labelled), face 68, left/right hand 21.  Flag 2 = visible (depth-tested), 1 = in
frame but hidden, 0 = outside the image; as in COCO-WholeBody, flags > 0 are scored.  The person
box is the box of the visible person mask.  The synthetic hips are SMPL-H hip joints, which sit
a few cm from where COCO annotators put hips: a constant bias of the hip rows.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Final

import numpy as np

from ..core.skeleton import BODY_KEYPOINT_NAMES
from ..detectors import add_detector_arguments, detector_from_options
from .coco_wholebody import BOX_ENLARGE, score
from .common import enlarged_box, mean_or_none, mpjpe, note, print_result, procrustes_align

EVAL_SEED: Final[int] = 20_211_000
#: bump when the engine's output for a seed changes (the cached set is keyed by it)
ENGINE_VERSION: Final[int] = 3
EVAL_COUNT: Final[int] = 500
TAGS: Final[tuple[str, ...]] = ("hand_small", "limbs_out_of_frame", "hand_occluded", "truncated", "occluded", "blurred")
HARD: Final[tuple[str, ...]] = ("hand_small", "limbs_out_of_frame", "hand_occluded")
_COCO17: Final[tuple[str, ...]] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle")
_FEET6: Final[tuple[str | None, ...]] = ("left_big_toe", None, "left_heel", "right_big_toe", None, "right_heel")


def eval_config(data_root: str | None = None):
    """The evaluation set's :class:`SynthConfig` (held-out MoCap actor, default variety)."""
    from ..synth import SynthConfig

    return SynthConfig(pose_source="mocap-heldout", data_root=data_root)


def wholebody_gt(body_2d, body_vis, hand_2d, hand_vis, face_68, face_vis, width: int, height: int) -> np.ndarray:
    """GT ``(N, 133, 3)`` x, y, flag (2 visible, 1 hidden in frame, 0 outside) in COCO-WholeBody order."""
    idx = {n: i for i, n in enumerate(BODY_KEYPOINT_NAMES)}
    N = body_2d.shape[0]

    def flags(xy, vis):
        inside = (xy[..., 0] >= 0) & (xy[..., 0] < width) & (xy[..., 1] >= 0) & (xy[..., 1] < height)
        return np.where(vis & inside, 2.0, np.where(inside, 1.0, 0.0))

    body = np.concatenate([body_2d, flags(body_2d, body_vis)[..., None]], -1)
    b17 = body[:, [idx[n] for n in _COCO17]]
    feet = np.zeros((N, 6, 3))
    for k, n in enumerate(_FEET6):
        if n is not None:
            feet[:, k] = body[:, idx[n]]
    face = np.concatenate([face_68, flags(face_68, face_vis)[..., None]], -1)
    hands = np.concatenate([hand_2d, flags(hand_2d, hand_vis)[..., None]], -1)
    return np.concatenate([b17, feet, face, hands[:, 0], hands[:, 1]], 1)


def person_boxes(mask: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``[x, y, w, h]`` ``(N, 4)``: the box of the visible mask (of the labelled points if empty)."""
    out = np.zeros((len(mask), 4))
    for i, m in enumerate(mask):                       # per image: two projections of its mask
        cols, rows = np.nonzero(m.any(0))[0], np.nonzero(m.any(1))[0]
        if len(cols):
            x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
        else:
            pts = gt[i][gt[i, :, 2] > 0, :2]
            x0, y0 = pts.min(0) if len(pts) else (0, 0)
            x1, y1 = pts.max(0) + 1 if len(pts) else (m.shape[1], m.shape[0])
        out[i] = (x0, y0, max(x1 - x0, 1), max(y1 - y0, 1))
    return out


def cache_dir(key: str) -> Path:
    return Path(os.environ.get("FULLBODY_CACHE", Path.home() / ".cache" / "fullbody")) / "synth_eval" / key


def eval_set(count: int, cache: Path | None, data_root: str | None, device: str = "cpu"):
    """The first ``count`` images of the evaluation set as one SynthBatch (rendered once, cached as shards)."""
    import torch

    from ..synth import generate
    from ..synth.batch import concat
    from ..synth.shards import read_shard, shard_name, write_shard

    cfg = eval_config(data_root)
    cj = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "data_root"}, sort_keys=True)
    key = hashlib.sha1(f"{cj}|{EVAL_SEED}|{ENGINE_VERSION}|{torch.__version__}".encode()).hexdigest()[:16]
    folder = Path(cache) if cache is not None else cache_dir(key)
    folder.mkdir(parents=True, exist_ok=True)
    per = 50
    parts = []
    for k, start in enumerate(range(0, count, per)):
        n = min(per, count - start)
        path = folder / shard_name(k)
        b = None
        if path.is_file():
            b = read_shard(path)
            if len(b) < n:
                b = None
        if b is None:
            note(f"rendering evaluation images {start}..{start + per - 1} into {folder}")
            b = generate(cfg, EVAL_SEED, per, device=device, start=start, log=note).to("cpu")
            write_shard(path, b, cj, EVAL_SEED)
        parts.append(b[:n])
    return concat(parts) if len(parts) > 1 else parts[0]


def predict(detector, batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-down detection: ``(preds (N, 133, 3), hands_3d (N, 2, 21, 3), hands_conf (N, 2), gt, boxes)``."""
    N, _, H, W = batch.image.shape
    gt = wholebody_gt(batch.body_2d.numpy(), batch.body_vis.numpy(), batch.hand_2d.numpy(), batch.hand_vis.numpy(),
                      batch.face_68.numpy(), batch.face_68_vis.numpy(), W, H)
    boxes = person_boxes(batch.mask.numpy(), gt)
    preds = np.zeros((N, 133, 3))
    h3 = np.zeros((N, 2, 21, 3))
    hc = np.zeros((N, 2))
    imgs = (batch.image.permute(0, 2, 3, 1).numpy()[..., ::-1] * 255 + 0.5).astype(np.uint8)
    for i in range(N):                                         # one detector call per image
        x0, y0, x1, y1 = enlarged_box(boxes[i], BOX_ENLARGE, W, H)
        det = detector.detect(np.ascontiguousarray(imgs[i, y0:y1, x0:x1]))
        preds[i] = det.wholebody_2d
        preds[i, :, :2] += (x0, y0)
        h3[i], hc[i] = det.hands_3d, det.hands_conf
        if (i + 1) % 50 == 0:
            note(f"  {i + 1}/{N} images")
    return preds, h3, hc, gt, boxes


def hand3d_scores(pred: np.ndarray, conf: np.ndarray, gt3: np.ndarray, gt_in: np.ndarray) -> dict:
    """``eval hand3d``'s metrics over hands in frame (``gt_in (N, 2)``) that were detected (conf > 0)."""
    use = gt_in & (conf > 0)
    p = pred[use] * 1000.0
    g = gt3[use] * 1000.0
    p, g = p - p[:, :1], g - g[:, :1]
    return {"mpjpe_mm": mean_or_none(mpjpe(p, g)),
            "pa_mpjpe_mm": mean_or_none(mpjpe(procrustes_align(p, g), g)) if len(p) else None,
            "detection_rate": float(use.sum() / gt_in.sum()) if gt_in.any() else None,
            "hands": int(gt_in.sum())}


def evaluate(detector, count: int = EVAL_COUNT, cache: Path | None = None, data_root: str | None = None,
             device: str = "cpu") -> dict:
    batch = eval_set(count, cache, data_root, device)
    preds, h3, hc, gt, boxes = predict(detector, batch)
    N, _, H, W = batch.image.shape
    hand_2d = batch.hand_2d.numpy()
    inside = (hand_2d[..., 0] >= 0) & (hand_2d[..., 0] < W) & (hand_2d[..., 1] >= 0) & (hand_2d[..., 1] < H)
    gt_in = inside.sum(-1) >= 11
    tags = {k: v.numpy().astype(bool) for k, v in batch.tags.items()}
    subsets = {"all": np.ones(N, bool)}
    subsets.update({t: tags[t] for t in TAGS})
    subsets["clean"] = ~np.any([tags[t] for t in HARD], axis=0)
    out = {}
    for name, sel in subsets.items():
        r = score(preds[sel], gt[sel], boxes[sel]) if sel.any() else {"persons": 0}
        r.pop("persons", None)
        r["images"] = int(sel.sum())
        r["hand3d"] = hand3d_scores(h3[sel], hc[sel], batch.hand_3d.numpy()[sel], gt_in[sel])
        out[name] = r
    return {"set": {"seed": EVAL_SEED, "images": int(N), "of": EVAL_COUNT, "pose_source": "mocap-heldout"},
            "detector": getattr(detector, "name", "?"), "by_tag": out}


def _count(text: str) -> int:
    v = int(text)
    if not 1 <= v <= EVAL_COUNT:
        raise argparse.ArgumentTypeError(f"must be in [1, {EVAL_COUNT}], got {v}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=_count, default=EVAL_COUNT,
                        help=f"score the first N images of the fixed set (default all {EVAL_COUNT})")
    parser.add_argument("--cache", type=Path, default=None, help="shard folder of the rendered set (default in $FULLBODY_CACHE)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder with mocap/ and realdata/ (default ../shared/data)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for rendering (default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_detector_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    detector = detector_from_options(args)
    try:
        result = evaluate(detector, args.count, args.cache, None if args.data_root is None else str(args.data_root))
    finally:
        detector.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result({"detector": result["detector"], "images": result["set"]["images"]}, False)
        for tag, r in result["by_tag"].items():
            print_result({f"[{tag}] images": r["images"], **{f"{k}": v for k, v in r.items() if isinstance(v, dict)}}, False)
    return 0
