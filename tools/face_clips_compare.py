"""Before/after table of ``eval face-video`` figures (markdown):

    .venv/bin/python tools/face_clips_compare.py TAG_A TAG_B

reads ``out/face_clips/TAG/CLIP.json`` of ``tools/face_clips_run.sh``."""
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "out" / "face_clips"
KEYS = ["r_jaw_lip", "r_jaw_close_lip", "r_avatar_lip", "r_blink_lid", "closed_lip_jaw", "r_mouth_width", "r_gaze_x",
        "r_gaze_y", "offset_d", "landmark_d", "face_scale"]
CLIPS = ["d0", "d3", "s20", "aoc", "raw_0", "raw_5"]


def f(x):
    return "–" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def main(a: str, b: str) -> None:
    J = {c: tuple(json.loads((OUT / t / f"{c}.json").read_text()) for t in (a, b)) for c in CLIPS}
    print("| figure | " + " | ".join(CLIPS) + " |")
    print("|---" * (len(CLIPS) + 1) + "|")
    for k in KEYS:
        print(f"| `{k}` | " + " | ".join(f"{f(J[c][0].get(k))} → {f(J[c][1].get(k))}" for c in CLIPS) + " |")
    for k in ("eye_width", "eye_open"):
        print(f"| `{k}` avatar (hers) | " + " | ".join(
            f"{f(J[c][0].get(k, {}).get('avatar'))} → {f(J[c][1].get(k, {}).get('avatar'))} ({f(J[c][1].get(k, {}).get('image'))})"
            for c in CLIPS) + " |")
    for part in ("cheek", "forehead"):
        e = [tuple(J[c][i].get("colour", {}).get(part, {}).get("render_error") for i in (0, 1)) for c in CLIPS]
        print(f"| {part} `render_error` | " + " | ".join(f"{f(x)} → {f(y)}" for x, y in e) + " |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
