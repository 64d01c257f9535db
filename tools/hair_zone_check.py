"""How much hair a capture's face colour carries (docs/face.md, "Hair in the face oval"):

    .venv/bin/python tools/hair_zone_check.py CAPTURE.npz [CAPTURE.npz ...]

For each capture, the final albedo (3DMM albedo + ``face_albedo_detail``) of the hair zone's vertices
(:func:`model_runtime.face.albedo_detail.hair_zone`: above the brows, beside the eyes' outer corners)
against the median luminance of the skin reference vertices: the fraction of zone vertices darker than
0.55 of the skin (hair-dark), and the zone's median luminance ratio."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import numpy as np  # noqa: E402

from model_runtime.core.capture_file import load_capture  # noqa: E402
from model_runtime.face.albedo_detail import _LUMA, hair_zone  # noqa: E402
from model_runtime.face.correspondence import correspondence_for  # noqa: E402
from model_runtime.models.face_model import face_albedo  # noqa: E402
from model_runtime.models.load import load_face_model  # noqa: E402

m = load_face_model(None)
mean = np.asarray(m.mean_shape, np.float64).reshape(-1, 3)
zone, skin = hair_zone(mean, correspondence_for(m).points(mean[None])[0])
for p in sys.argv[1:]:
    cap = load_capture(p)
    base = face_albedo(m.mean_albedo, m.albedo_basis, np.asarray(cap["face_albedo"], np.float32)[None])[0]
    det = cap["face_albedo_detail"]
    alb = np.clip(base + (det if det.size else 0.0), 0.0, 1.0)
    lum = alb @ _LUMA
    q = lum / np.median(lum[skin])
    print(f"{p}: hair-dark zone vertices {100 * float((q[zone] < 0.55).mean()):.1f} % "
          f"(of {int(zone.sum())}), zone median luminance / skin {float(np.median(q[zone])):.2f}")
