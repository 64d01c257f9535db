"""The root's path across person switches, before and after (docs/fidelity.md, "Another person"):

    .venv/bin/python tools/track_break_plot.py BEFORE.npz AFTER.npz OUT.png [FIRST LAST]

Plots the captured root translation x (camera space, m) of two captures of the same clip over frames
FIRST..LAST, invalid frames as hollow markers, and the AFTER capture's ``track_break`` frames as lines."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model_runtime.core.capture_file import load_capture  # noqa: E402

before, after = load_capture(sys.argv[1]), load_capture(sys.argv[2])
lo, hi = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (0, after.num_frames - 1)
f = np.arange(lo, hi + 1)
fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
for cap, name, colour in ((before, "before (interpolated across)", "tab:red"), (after, "after (new track)", "tab:blue")):
    x, v = cap["transl"][f, 0], cap["valid"][f].astype(bool)
    ax.plot(f, x, "-", color=colour, lw=1, label=name)
    ax.plot(f[v], x[v], "o", color=colour, ms=2.5)
    ax.plot(f[~v], x[~v], "o", mfc="none", color=colour, ms=6)
for b in np.flatnonzero(after["track_break"]):
    if lo <= b <= hi:
        ax.axvline(b, color="grey", lw=0.8, ls="--")
ax.set_xlabel("frame (dashed: track_break; hollow: no person detected)")
ax.set_ylabel("root x (m)")
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[3])
print(f"wrote {sys.argv[3]}")
