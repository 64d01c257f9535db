"""Does the identity fit's landmark error tell the lens?  python tools/face_lens_check.py CLIP W H

On the cached MediaPipe landmarks of a talking clip (out/face_clips/lm/CLIP.lm.npz, written by
tools/face_clips_run.sh), the face tracker learns the identity on 20 of the first 40 face frames and tracks
120 frames, at fields of view 20-90 deg; prints the mean landmark error at each (docs/face.md, "What is left")."""
import math
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import numpy as np

from model_runtime.face.tracker import FaceTracker
from model_runtime.models.face_model import load_builtin_face

clip, W, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
z = np.load(Path(__file__).resolve().parents[1] / 'out' / 'face_clips' / 'lm' / f'{clip}.lm.npz'); L = z['landmarks']; found = z['found']
face = load_builtin_face()
idx = np.nonzero(found)[0][:40:2]            # identity frames: 20 of the first 40 face frames
for fov in (20, 30, 45, 60, 75, 90):
    f = 0.5 * max(W, H) / math.tan(math.radians(fov) / 2)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    tr = FaceTracker(face)
    ident = np.zeros(face.sizes['identity']); errs = []; n = 0
    for i in idx:
        r = tr.track(L[i], K, ident, None, fit_identity=True)
        ident = (ident * n + r.identity) / (n + 1); n += 1
    # second pass with the identity frozen: landmark error per frame
    prev = None
    for i in np.nonzero(found)[0][:120]:
        r = tr.track(L[i], K, ident, prev); prev = r; errs.append(r.landmark_error_px)
    size = np.median([np.sqrt(np.prod(np.ptp(L[i, :, :2], 0))) for i in idx])
    print(clip, f'fov {fov:3d} f {f:7.1f}  lm err {np.mean(errs):.3f} px ({100*np.mean(errs)/size:.2f} % of face)  |identity| {np.linalg.norm(ident):.2f}')
