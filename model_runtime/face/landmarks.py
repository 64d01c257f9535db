"""MediaPipe face-mesh landmark tables (numpy only: the detector and the face fit both import it)."""
from __future__ import annotations

from typing import Final

import numpy as np

#: MediaPipe face-mesh landmarks around the face's outline (a closed loop, forehead top first)
FACE_OVAL: Final[tuple[int, ...]] = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
                                     400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
                                     103, 67, 109)

#: each eye's 16-point ring (lids and corners), the person's left eye then the right (MediaPipe ids)
MP_LEFT_EYE_RING: Final[tuple[int, ...]] = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387,
                                            388, 466)
MP_RIGHT_EYE_RING: Final[tuple[int, ...]] = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160,
                                             161, 246)

MP468_TO_IBUG68: Final[np.ndarray] = np.array([
    127, 234, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 454, 356,  # 0-16 jaw
    71, 63, 105, 66, 107,                                   # 17-21 brow (subject's right)
    336, 296, 334, 293, 301,                                # 22-26 brow (subject's left)
    168, 197, 5, 4,                                         # 27-30 nose bridge
    75, 97, 2, 326, 305,                                    # 31-35 nostrils
    33, 160, 158, 133, 153, 144,                            # 36-41 eye (subject's right)
    362, 385, 387, 263, 373, 380,                           # 42-47 eye (subject's left)
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,    # 48-59 outer lips
    78, 82, 13, 312, 308, 317, 14, 87,                      # 60-67 inner lips
], dtype=np.int64)
"""Face-mesh vertex (of MediaPipe's 468) for each iBUG-68 point (jaw 0-16, brows 17-26, nose
27-35, eyes 36-47, mouth 48-67): the widely used MediaPipe->dlib-68 table (e.g. ByteDance
LatentSync 1.5, Apache-2.0, ``LM68_FROM_MP478``), except the jaw.  That table starts the jaw at the
temples (162 / 389, at brow height), where iBUG-68 starts it at the ear at eye height.  The jaw here
follows iBUG's definition on the face-mesh oval: 0 and 16 are the oval's vertices at the height of
the eye corners (127 / 356), 8 is the chin (152), and 1-7 / 9-15 are the oval vertices nearest to
even steps of arc length between them (measured on the built-in face's mean shape).  Measured after
choosing it (docs/evaluation_face.md): MediaPipe's 68 on the 7 AFLW2000-3D images 5.46 -> 5.01 %
NME, lower on all 7; the jaw on the 6 independent 68-point images of mmpose's 300W / 300W-LP / 300VW
samples 7.43 -> 6.69 % (4 of 6 lower).  Brow points lie on the brow ridge, which the mesh only
approximates."""
