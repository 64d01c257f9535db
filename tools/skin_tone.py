"""The avatar's body tone of captures: python tools/skin_tone.py CAPTURE.npz [...]

The body's colour is the median of the captured face albedo (``FullBodyModel.vertex_colors``); this prints
it in sRGB 0-255 and the albedo coefficients' norm (docs/face.md, "Only skin colours teach the albedo")."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import numpy as np

from model_runtime.core.capture_file import load_capture
from model_runtime.models.face_model import face_albedo
from model_runtime.models.load import load_face_model


def srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.round(255 * np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055))


def main() -> None:
    for f in sys.argv[1:]:
        cap = load_capture(f)
        fm = load_face_model(str(cap["face_model"]))
        a = cap["face_albedo"].astype(np.float32)
        rgb = np.clip(face_albedo(fm.mean_albedo, fm.albedo_basis, a[None])[0], 0, 1)
        print(f"{f}: body tone sRGB {srgb(np.median(rgb, 0)).astype(int).tolist()}, |albedo| {np.linalg.norm(a):.1f}")


if __name__ == "__main__":
    main()
