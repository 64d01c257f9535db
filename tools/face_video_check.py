"""Face fitting on a real clip, video mode: do the ARKit expressions follow the face, and how fast?

    .venv/bin/python tools/face_video_check.py VIDEO [--end N] [--json] [--frames] [--method fit|track]

Runs the shared MediaPipe detector in video mode and, per frame, either (``--method fit``,
default) :class:`FaceFitter` with the state carried between frames, or (``--method track``)
the capture pipeline's per-frame face: ``FaceFitStage.track`` (the landmark tracker with
the clip's identity learnt on its first frames, camera of the capture's default field of
view).  It then compares the coefficients with what MediaPipe's landmarks show directly:

* ``jawOpen`` against the inner-lip gap (landmarks 13-14);
* ``eyeBlinkLeft``/``eyeBlinkRight`` against the lid gaps (386-374 / 159-145; the
  person's left/right), so a blink should give a negative correlation.

Gaps are divided by the face box size.  Also reports the lighting (``sh``) and albedo of
the last frame and the fit time per frame (torch on one thread).  Figures in
docs/evaluation_face.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.core.errors import InputMissingError  # noqa: E402

# MediaPipe face-mesh landmark pairs whose distance measures an opening
GAPS = {"mouth": (13, 14), "eye_left": (386, 374), "eye_right": (159, 145)}
COEFF = {"mouth": "jawOpen", "eye_left": "eyeBlinkLeft", "eye_right": "eyeBlinkRight"}


def run_clip(video: Path, end: int | None, method: str = "fit") -> dict:
    import cv2
    import torch

    from model_runtime.models.face_model import load_builtin_face
    from model_runtime.detectors import make_detector
    from model_runtime.face.fit import FaceFitter

    torch.set_num_threads(1)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise InputMissingError(f"{video}: cannot open the video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    model = load_builtin_face()
    names = list(model.exp_names)
    fitter = FaceFitter(model)
    stage = None
    if method == "track":
        from model_runtime.core.blas import limit_numpy_blas_threads
        from model_runtime.face.stage import FaceFitStage
        from model_runtime.capture.translation import DEFAULT_FOV_DEG, intrinsics_from_fov

        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        limit_numpy_blas_threads(1)                  # one core, as inside a capture on 2 cores
        stage = FaceFitStage(fitter)
        stage.reset(intrinsics_from_fov(size, DEFAULT_FOV_DEG))
    det = make_detector("mediapipe")
    state, rows, times, last = None, [], [], None
    try:
        i = 0
        while end is None or i < end:
            ok, img = cap.read()
            if not ok:
                break
            d = det.detect(img, timestamp_ms=int(round(1000.0 * i / fps)))
            i += 1
            if d.face_landmarks is None:
                continue
            t0 = time.perf_counter()
            if stage is not None:
                tracked = stage.track(img, d)
                times.append(time.perf_counter() - t0)
                if tracked is None:
                    continue
                expression = tracked[0]
            else:
                res = fitter.fit(img, d.face_landmarks, d.face_box, state)
                times.append(time.perf_counter() - t0)
                if not res.ok:
                    continue
                state, last, expression = res.state, res, res.expression
            size = float(np.sqrt(d.face_box[2] * d.face_box[3]))
            lm = d.face_landmarks[:, :2]
            gaps = {k: float(np.linalg.norm(lm[a] - lm[b]) / size) for k, (a, b) in GAPS.items()}
            rows.append({"frame": i - 1, "time": (i - 1) / fps, "expression": np.asarray(expression, np.float64),
                         **{f"gap_{k}": v for k, v in gaps.items()},
                         **{c: float(expression[names.index(c)]) for c in COEFF.values()},
                         "top": [(names[k], round(float(expression[k]), 2))
                                 for k in np.argsort(-expression)[:3]]})
    finally:
        det.close()
        cap.release()
    if len(rows) < 3:
        raise InputMissingError(f"{video}: a face was fitted in only {len(rows)} frames")
    out = {"video": str(video), "method": method, "frames": i, "fits": len(rows),
           "first_frame_ms": 1000.0 * times[0],
           "tracking_ms_median": 1000.0 * float(np.median(times[1:])),
           "tracking_ms_mean": 1000.0 * float(np.mean(times[1:]))}
    for k, c in COEFF.items():
        g = np.array([r[f"gap_{k}"] for r in rows])
        e = np.array([r[c] for r in rows])
        out[c] = {"corr_with_gap": float(np.corrcoef(g, e)[0, 1]) if g.std() > 0 and e.std() > 0 else None,
                  "min": float(e.min()), "max": float(e.max())}
    out["smoothing"] = smoothing_report(rows, names)
    if last is not None:
        sh = last.sh.reshape(3, -1)
        out["sh_last"] = {"ambient_rgb": [round(float(x), 3) for x in sh[:, 0]],
                          "max_abs_other": float(np.abs(sh[:, 1:]).max())}
        out["albedo_last"] = {"norm": float(np.linalg.norm(last.albedo)), "max_abs": float(np.abs(last.albedo).max())}
    out["rows"] = rows
    return out


def smoothing_report(rows: list[dict], names: list[str]) -> dict:
    """The capture's expression One Euro (and, for comparison, the body's settings) applied to the
    per-frame coefficients: peak kept, lag (the shift in frames, 0..5, that best aligns the filtered
    with the raw series) and jitter (mean |second difference| over all coefficients)."""
    from model_runtime.capture.filters import OneEuroFilter, SmoothingConfig
    from model_runtime.capture.postprocess import expression_smoothing

    E = np.stack([r["expression"] for r in rows])                 # (T, Ke)
    t = np.array([r["time"] for r in rows])
    out = {"raw_jitter": float(np.abs(np.diff(E, 2, axis=0)).mean())}
    for label, cfg in (("expression", expression_smoothing(SmoothingConfig())), ("body", SmoothingConfig())):
        flt = OneEuroFilter(cfg)
        F = np.stack([flt(e, ti) for e, ti in zip(E, t)])
        res = {"jitter": float(np.abs(np.diff(F, 2, axis=0)).mean())}
        for c in COEFF.values():
            k = names.index(c)
            lag = min(range(6), key=lambda s: float(((F[s:, k] - E[:len(E) - s, k]) ** 2).mean()))
            res[c] = {"peak_raw": float(E[:, k].max()), "peak_filtered": float(F[:, k].max()), "lag_frames": lag}
        out[label] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--end", type=int, default=None, help="stop before this frame (default: whole clip)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--frames", action="store_true", help="also print one line per frame")
    ap.add_argument("--method", choices=("fit", "track"), default="fit",
                    help="fit: FaceFitter on every frame; track: the capture's per-frame tracker")
    args = ap.parse_args(argv)
    try:
        out = run_clip(args.video, args.end, args.method)
    except InputMissingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = out.pop("rows")
    for r in rows:
        r.pop("expression")
    if args.json:
        print(json.dumps(out if not args.frames else {**out, "rows": rows}))
        return 0
    if args.frames:
        for r in rows:
            print(f"{r['frame']:4d} mouth {r['gap_mouth']:.3f} jawOpen {r['jawOpen']:.2f} | eyes "
                  f"{r['gap_eye_left']:.3f}/{r['gap_eye_right']:.3f} blink {r['eyeBlinkLeft']:.2f}/"
                  f"{r['eyeBlinkRight']:.2f} | " + " ".join(f"{n} {v:.2f}" for n, v in r["top"]))
    print(f"{out['video']} ({out['method']}): {out['fits']} of {out['frames']} frames fitted; first frame "
          f"{out['first_frame_ms']:.0f} ms, then median {out['tracking_ms_median']:.1f} ms/frame")
    for c in COEFF.values():
        v = out[c]
        corr = "n/a" if v["corr_with_gap"] is None else f"{v['corr_with_gap']:+.2f}"
        print(f"  {c:14s} range {v['min']:.2f}..{v['max']:.2f}, correlation with its landmark gap {corr}")
    sm = out["smoothing"]
    for label in ("expression", "body"):
        v = sm[label]
        peaks = ", ".join(f"{c} peak {v[c]['peak_filtered']:.2f}/{v[c]['peak_raw']:.2f} lag {v[c]['lag_frames']}"
                          for c in COEFF.values())
        print(f"  One Euro ({label} settings): jitter {v['jitter']:.4f} (raw {sm['raw_jitter']:.4f}); {peaks}")
    if "sh_last" in out:
        print(f"  last frame: SH ambient {out['sh_last']['ambient_rgb']}, other bands |.| <= "
              f"{out['sh_last']['max_abs_other']:.2f}; albedo norm {out['albedo_last']['norm']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
