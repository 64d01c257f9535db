"""MediaPipe face mesh (468 points) -> surface points of a 3DMM, computed once per face model.

The fitting's landmark term needs to know *where on the 3DMM* each of MediaPipe's
468 landmarks lies.  MediaPipe does not ship its canonical face mesh in the
Python wheel, so the correspondence is measured the direct way: the face model's
mean shape is rendered with its mean albedo from several viewpoints (the built-in
face inside the built-in body's head, with eyes: :func:`builtin_render_context`),
MediaPipe's attention face mesh runs on every render, and each detected landmark
is traced back through the rasteriser to the triangle and barycentric point under
it.  Per landmark the per-view surface points are pooled: the sample nearest to
their (component-wise) median is kept, and the robust spread of the samples and
the share of views that agree give the landmark's reliability weight.  Landmarks
on the face oval (silhouette points that slide with the head pose) are
down-weighted further.

* Built-in face: the result is shipped as ``assets/face_mp468_correspondence.npz``
  (built by ``tools/build_face_correspondence.py``), checked against the model
  by a signature of its topology and mean shape.
* Other models (BFM files cannot be shipped): built at first use and cached
  under ``$FULLBODY_CACHE`` (default ``~/.cache/fullbody_capture``).

Arrays: ``vertex_ids (468, 3)`` int, ``bary (468, 3)`` float (rows sum to 1),
``weights (468,)`` in (0, 1].
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch

from ..core import backend
from ..core.errors import ModelFileError
from ..models.face_model import NUM_SH, FaceModel
from ..core.safe_npz import load_npz
from ..core.asset_io import ASSET_DIR as _ASSET_DIR
from .landmarks import MP468_TO_IBUG68  # noqa: F401 - the one table, re-exported for the fit
from .symmetry import NUM_MP_LANDMARKS, load_mirror_table, symmetrize

CORRESPONDENCE_VERSION: Final[int] = 1
BUILTIN_CORRESPONDENCE_PATH: Final[Path] = (
    _ASSET_DIR / "face_mp468_correspondence.npz")

# Weight factor for landmarks on MediaPipe's face oval (they follow the silhouette,
# not a fixed surface point, as the head turns).
OVAL_WEIGHT: Final[float] = 0.3
# A landmark's weight is exp(-(spread / (SPREAD_SCALE * eye-corner distance))^2) times
# min(1, 2 * fraction of views that agree), at least MIN_WEIGHT.
SPREAD_SCALE: Final[float] = 0.05
# A view's sample further than OUTLIER_FRACTION * eye-corner distance from the median disagrees.
OUTLIER_FRACTION: Final[float] = 0.25
MIN_WEIGHT: Final[float] = 0.05


@dataclass(frozen=True)
class FaceCorrespondence:
    """468 MediaPipe landmarks as barycentric points on a face model's triangles.

    vertex_ids ``(468, 3)`` int64, bary ``(468, 3)`` float32, weights ``(468,)`` float32;
    ``model_signature`` identifies the face model it was built for (:func:`model_signature`);
    spread_m ``(468,)`` (optional, for inspection): median distance in metres of the per-view
    surface points from their median when the file was built.
    """

    vertex_ids: np.ndarray
    bary: np.ndarray
    weights: np.ndarray
    model_signature: str
    version: int = CORRESPONDENCE_VERSION
    spread_m: np.ndarray | None = None

    def points(self, verts):
        """Surface points of the landmarks: verts ``(B, N, 3)`` -> ``(B, 468, 3)`` (torch or numpy)."""
        ids = backend.asarray_like(self.vertex_ids, verts) if backend.is_torch(verts) else self.vertex_ids
        bary = backend.asarray_like(self.bary, verts)
        return (verts[:, ids] * bary[None, :, :, None]).sum(-2)

    def check(self, model: FaceModel, path: str | Path = "<correspondence>") -> "FaceCorrespondence":
        """Raise :class:`ModelFileError` unless this correspondence fits ``model``; returns self."""
        if self.version != CORRESPONDENCE_VERSION:
            raise ModelFileError(path, "version", f"is {self.version}, this runtime reads {CORRESPONDENCE_VERSION}")
        for name, arr, shape in (("vertex_ids", self.vertex_ids, (NUM_MP_LANDMARKS, 3)),
                                 ("bary", self.bary, (NUM_MP_LANDMARKS, 3)),
                                 ("weights", self.weights, (NUM_MP_LANDMARKS,))):
            if arr.shape != shape:
                raise ModelFileError(path, name, f"has shape {arr.shape}, expected {shape}")
        if self.vertex_ids.min() < 0 or self.vertex_ids.max() >= model.num_vertices:
            raise ModelFileError(path, "vertex_ids", f"outside 0..{model.num_vertices - 1}")
        sig = model_signature(model)
        if self.model_signature != sig:
            raise ModelFileError(path, "model_signature", f"is {self.model_signature}, but the face model "
                                 f"{model.source or model.kind} has {sig}; rebuild it with "
                                 "tools/build_face_correspondence.py")
        return self

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, version=np.int64(self.version), vertex_ids=self.vertex_ids.astype(np.int32),
                            bary=self.bary.astype(np.float32), weights=self.weights.astype(np.float32),
                            model_signature=np.array(self.model_signature),
                            **({} if self.spread_m is None else {"spread_m": self.spread_m.astype(np.float32)}))


def load_correspondence_file(path: str | Path) -> FaceCorrespondence:
    """Read a correspondence ``.npz`` (no model check; see :meth:`FaceCorrespondence.check`)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, None, "is missing; run tools/build_face_correspondence.py")
    z = load_npz(path, ("vertex_ids", "bary", "weights", "model_signature", "version"), optional=("spread_m",))
    try:
        return FaceCorrespondence(
            vertex_ids=z["vertex_ids"].astype(np.int64), bary=z["bary"].astype(np.float32),
            weights=z["weights"].astype(np.float32), model_signature=str(z["model_signature"]),
            version=int(z["version"]),
            spread_m=z["spread_m"].astype(np.float32) if "spread_m" in z else None)
    except (TypeError, ValueError) as e:  # a string where numbers belong, a non-scalar version, ...
        raise ModelFileError(path, None, f"cannot read ({e})") from e


def model_signature(model: FaceModel) -> str:
    """Short hash of a face model's topology and mean shape (what the correspondence depends on)."""
    h = hashlib.sha1()
    h.update(np.asarray(model.faces, np.int64).tobytes())
    h.update(np.round(np.asarray(model.mean_shape, np.float64), 5).tobytes())
    return f"{model.num_vertices}v{len(model.faces)}f-{h.hexdigest()[:12]}"


def cache_dir() -> Path:
    return Path(os.environ.get("FULLBODY_CACHE", Path.home() / ".cache" / "fullbody_capture"))


#: MediaPipe landmarks on the two sides of an opening and the ARKit key that opens/closes it:
#: (landmarks on the side that stays, landmarks on the side the key moves, key).  Inner lips:
#: the upper lip stays, ``jawOpen`` moves the lower; lids: the lower lid stays, ``eyeBlink*``
#: moves the upper (person's right eye = MediaPipe 33-133 = ``eyeBlinkRight``).
OPENINGS: Final[tuple[tuple[tuple[int, ...], tuple[int, ...], str], ...]] = (
    ((191, 80, 81, 82, 13, 312, 311, 310, 415), (95, 88, 178, 87, 14, 317, 402, 318, 324), "jawOpen"),
    ((7, 163, 144, 145, 153, 154, 155), (246, 161, 160, 159, 158, 157, 173), "eyeBlinkRight"),
    ((249, 390, 373, 374, 380, 381, 382), (466, 388, 387, 386, 385, 384, 398), "eyeBlinkLeft"),
)
#: search radius around a traced point, as a fraction of the model's eye-corner distance
OPENING_RADIUS: Final[float] = 0.08


def split_openings(model: FaceModel, corr: FaceCorrespondence) -> FaceCorrespondence:
    """Put the landmarks of the lip gap and the lids on the side of the opening they belong to.

    The correspondence is traced on renders of the closed mean face, where an upper and a lower
    inner-lip landmark land on the same seam and either lip may be hit (LivePortrait and the
    built-in face: 3 of 5 inner-lip pairs did not part with ``jawOpen``, so a talking mouth could
    only be matched by other keys).  For each landmark of :data:`OPENINGS` the vertex within
    ``OPENING_RADIUS`` eye-corner distances of its traced point is chosen that (a) moves with the
    opening key (``>= 0.6`` of the largest motion nearby) for the moving side, or (b) stays
    (``<= 0.25`` of it) for the other side; nearest first.  Models without the key (BFM) are
    returned unchanged.  -> a new correspondence (same weights)."""
    names = list(model.exp_names)
    if not all(k in names for *_, k in OPENINGS):
        return corr
    mean = np.asarray(model.mean_shape, np.float64)
    P = corr.points(mean[None])[0]                                                    # (468, 3)
    radius = OPENING_RADIUS * float(np.linalg.norm(P[33] - P[263]))
    vid, bary = corr.vertex_ids.copy(), corr.bary.copy()
    for stay, move, key in OPENINGS:
        motion = np.linalg.norm(np.asarray(model.exp_basis[:, :, names.index(key)], np.float64), axis=1)  # (N,)
        for ids, moving in ((stay, False), (move, True)):
            for i in ids:
                d = np.linalg.norm(mean - P[i], axis=1)
                near = np.flatnonzero(d < radius)
                if not len(near):
                    continue
                m = motion[near] / max(float(motion[near].max()), 1e-12)
                ok = near[m >= 0.6] if moving else near[m <= 0.25]
                if len(ok):
                    v = ok[np.argmin(d[ok])]
                    vid[i], bary[i] = v, (1.0, 0.0, 0.0)
    return FaceCorrespondence(vertex_ids=vid, bary=bary, weights=corr.weights, model_signature=corr.model_signature,
                              version=corr.version, spread_m=corr.spread_m)


#: ``FULLBODY_SYMMETRIC_FACE=1`` makes the built-in correspondence symmetric (:func:`.symmetry.symmetrize`);
#: off by default: on real clips it helped the jaw of two and hurt the blinks and landmarks of
#: another (docs/face.md, "A symmetric correspondence")
SYMMETRIC_ENV: Final[str] = "FULLBODY_SYMMETRIC_FACE"


def correspondence_for(model: FaceModel) -> FaceCorrespondence:
    """The correspondence of ``model``: the shipped file for the built-in face (made symmetric by
    :func:`.symmetry.symmetrize` when :data:`SYMMETRIC_ENV` is ``1``), else built once and cached; openings
    split by :func:`split_openings`."""
    if model.kind == "builtin":
        path = BUILTIN_CORRESPONDENCE_PATH
        corr = load_correspondence_file(path).check(model, path)
        if os.environ.get(SYMMETRIC_ENV) == "1":       # measured, not shipped: docs/face.md
            corr = symmetrize(model, corr, load_mirror_table())
        return split_openings(model, corr)
    path = cache_dir() / f"face_mp468_{model_signature(model)}.npz"
    if path.is_file():
        try:
            return split_openings(model, load_correspondence_file(path).check(model, path))
        except ModelFileError:
            pass  # stale/corrupt cache: rebuild below
    corr = build_correspondence(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    corr.save(tmp)
    os.replace(tmp, path)
    return split_openings(model, corr)


# ----------------------------------------------------------------------------- building

DEFAULT_VIEWS: Final[tuple[tuple[float, float], ...]] = tuple(
    (yaw, pitch) for yaw in (-24.0, -12.0, 0.0, 12.0, 24.0) for pitch in (-10.0, 0.0, 10.0))

# Eyeball colours (linear RGB) and the angular radii (deg, from the eye's centre about +Z) of
# pupil and iris (human iris ~12 mm across on a ~24 mm eyeball).
_PUPIL, _IRIS, _SCLERA = (0.01, 0.01, 0.01), (0.09, 0.045, 0.02), (0.70, 0.66, 0.62)
_PUPIL_DEG, _IRIS_DEG = 11.0, 30.0
_BACKGROUND: Final[tuple[float, float, float]] = (0.18, 0.18, 0.2)


@dataclass(frozen=True)
class RenderContext:
    """Scenery drawn around the face in the correspondence renders but never traced to.

    MediaPipe places its landmarks on a whole head (eyes, ears, neck) far more consistently
    than on a floating, eyeless face mask, so the built-in face is rendered inside the
    built-in body's head (:func:`builtin_render_context`).  All in the face model's frame:
    verts ``(M, 3)``; faces ``(G, 3)`` into verts, wound like the face model's triangles;
    albedo ``(M, 3)`` linear RGB; eye_faces ``(G,)`` bool, eyeball triangles, coloured per
    pixel (sclera, iris, pupil) by the angle about +Z around the nearest of eye_centres ``(E, 3)``.
    """

    verts: np.ndarray
    faces: np.ndarray
    albedo: np.ndarray
    eye_faces: np.ndarray
    eye_centres: np.ndarray


def builtin_render_context(model: FaceModel, below_chin_m: float = 0.2) -> RenderContext | None:
    """The built-in body's head, neck, shoulders and eyeballs around the built-in face.

    The built-in face is the body template's head region (``extras['body_vertex_ids']``,
    same frame), so the body's triangles outside that region frame it exactly.  Skin takes
    the face's median albedo.  Returns None for a model that is not embedded in the
    built-in body (then the face is rendered alone).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ..models.body_model import load_builtin_body

    ids = model.extras.get("body_vertex_ids")
    if model.kind != "builtin" or ids is None:
        return None
    body = load_builtin_body()
    V, F = np.asarray(body.v_template, np.float64), np.asarray(body.faces, np.int64)
    ids = np.asarray(ids, np.int64)
    if ids.shape != (model.num_vertices,) or ids.max() >= len(V) \
            or np.abs(V[ids] - model.mean_shape).max() > 1e-4:
        return None
    in_face = np.zeros(len(V), bool)
    in_face[ids] = True
    low = float(model.mean_shape[:, 1].min()) - below_chin_m
    keep = ~in_face[F].all(1) & (V[F][..., 1] > low).all(1)             # (F,) body around the face
    n = len(V)
    adj = coo_matrix((np.ones(F.size), (F.ravel(), np.roll(F, 1, 1).ravel())), shape=(n, n))
    _, comp = connected_components(adj, directed=False)
    skin = np.asarray(body.extras.get("skin_component", np.ones(n, bool)), bool)
    kp = body.keypoint_vertices
    eye_comps = {int(comp[kp[k]]) for k in ("left_eye", "right_eye") if k in kp and not skin[kp[k]]}
    if len(eye_comps) != 2:                              # keypoints on the lids: nearest eyeball parts
        others = np.unique(comp[~skin])
        sizes = np.array([(comp == c).sum() for c in others])
        eye_comps = set(others[np.argsort(np.abs(sizes - np.median(sizes)))[:2]].tolist())
    is_eye_v = np.isin(comp, list(eye_comps))
    keep &= skin[F].all(1) | is_eye_v[F].all(1)                       # drop the tongue and teeth
    used = np.unique(F[keep])
    remap = np.full(n, -1)
    remap[used] = np.arange(len(used))
    faces = remap[F[keep]]
    skin_tone = np.median(np.asarray(model.mean_albedo, np.float64), axis=0)
    albedo = np.tile(skin_tone, (len(used), 1))
    centres = np.stack([V[comp == c].mean(0) for c in sorted(eye_comps)])
    return RenderContext(verts=V[used], faces=faces, albedo=albedo, eye_faces=is_eye_v[F[keep]].all(1),
                         eye_centres=centres)


def view_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Model (Y up, face +Z) -> camera (x right, y down, z forward) for a head turned by yaw/pitch."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    flip = np.diag([1.0, -1.0, -1.0])          # face looks at the camera
    return flip @ Rx @ Ry


def _studio_light() -> np.ndarray:
    """SH ``(27,)``: soft white ambient plus a key light from the camera and slightly above
    (camera axes: normals facing the camera are -z, facing up are -y)."""
    mu = np.zeros(NUM_SH)
    mu[0] = 0.7                                 # times pi/sqrt(4 pi) in sh_basis -> ~0.62 ambient
    mu[2] = -0.12                               # y band: from above
    mu[3] = -0.35                               # z band: from the camera
    return np.tile(mu, 3)


def render_view(model: FaceModel, context: RenderContext | None, R: np.ndarray, t: np.ndarray,
                K: np.ndarray, size: int, shape: np.ndarray | None = None):
    """Render the face (mean albedo) and its context: ``(image_bgr (size, size, 3) uint8, face_id)``.

    face_id ``(size, size)`` int64: the face model's triangle under each pixel, -1 on the
    context or background.  R ``(3, 3)``, t ``(3,)``: face model -> camera; K ``(3, 3)``;
    shape ``(N, 3)``: the face's vertices (default: the mean shape), e.g. with an expression.
    """
    from ..models.face_model import sh_shading, vertex_normals
    from .render import linear_to_bgr8, outward_sign, render_mesh

    mean = np.asarray(model.mean_shape if shape is None else shape, np.float64)
    faces = np.asarray(model.faces, np.int64)
    verts, tris, albedo = mean, faces, np.asarray(model.mean_albedo, np.float64)
    sign = outward_sign(model)
    normals = sign * vertex_normals(mean[None], faces)[0]
    if context is not None:
        cn = sign * vertex_normals(context.verts[None], context.faces)[0]
        verts = np.concatenate([mean, context.verts])
        tris = np.concatenate([faces, context.faces + len(mean)])
        albedo = np.concatenate([albedo, context.albedo])
        normals = np.concatenate([normals, cn])
    irr = sh_shading(np.ones_like(albedo)[None], (normals @ R.T)[None], _studio_light()[None])[0]
    T = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    chans, raster = render_mesh(T(verts @ R.T + t), tris, T(np.concatenate([albedo, irr, verts], 1)), T(K),
                                size, size, background=(*_BACKGROUND, 1, 1, 1, 0, 0, 0))
    alb, light, pos = chans[..., :3], chans[..., 3:6], chans[..., 6:]
    fid = raster.face_id.numpy().copy()
    if context is not None and context.eye_faces.any():
        ctx_id = fid - len(faces)
        eye = (ctx_id >= 0) & context.eye_faces[np.clip(ctx_id, 0, None)]
        p = pos[torch.as_tensor(eye)].numpy()                                   # (P, 3)
        c = context.eye_centres[np.linalg.norm(p[:, None] - context.eye_centres[None], axis=-1).argmin(1)]
        d = p - c
        ang = np.degrees(np.arccos(np.clip(d[:, 2] / np.maximum(np.linalg.norm(d, axis=1), 1e-12), -1, 1)))
        col = np.where((ang < _PUPIL_DEG)[:, None], _PUPIL, np.where((ang < _IRIS_DEG)[:, None], _IRIS, _SCLERA))
        alb[torch.as_tensor(eye)] = T(col)
    fid[fid >= len(faces)] = -1
    return linear_to_bgr8(alb * light), fid


def detect_face_mesh(images_bgr: list[np.ndarray]) -> list[np.ndarray | None]:
    """MediaPipe face mesh (still images, attention mesh as in the shared detector) -> ``(468, 2)`` px or None."""
    import cv2
    import mediapipe as mp

    out: list[np.ndarray | None] = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                         min_detection_confidence=0.3) as fm:
        for img in images_bgr:
            h, w = img.shape[:2]
            res = fm.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            if not res.multi_face_landmarks:
                out.append(None)
                continue
            lm = res.multi_face_landmarks[0].landmark
            out.append(np.array([[p.x * w, p.y * h] for p in lm[:NUM_MP_LANDMARKS]], np.float64))
    return out


def _oval_indices() -> np.ndarray:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    return np.unique(np.array(sorted(FACEMESH_FACE_OVAL), np.int64).ravel())


def _barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """2D barycentrics of points ``(M, 2)`` in triangles ``(M, 3, 2)``, clamped inside -> ``(M, 3)``."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-12, d00 * d11 - d01 * d01, 1.0)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - v - w, v, w], -1), 0.0, None)
    return bary / np.maximum(bary.sum(-1, keepdims=True), 1e-12)


def _trace(lm: np.ndarray, fid: np.ndarray, snap_px: float) -> np.ndarray:
    """Face triangle under each landmark ``(468, 2)`` px, or under the nearest face pixel within
    ``snap_px`` (landmarks just off the patch's edge); -1 where there is none -> ``(468,)``."""
    h, w = fid.shape
    r = np.clip(np.floor(lm[:, 1]).astype(int), 0, h - 1)
    c = np.clip(np.floor(lm[:, 0]).astype(int), 0, w - 1)
    tri = fid[r, c]
    miss = np.nonzero(tri < 0)[0]
    if len(miss):
        ys, xs = np.nonzero(fid >= 0)
        d2 = (ys[None] - r[miss, None]) ** 2 + (xs[None] - c[miss, None]) ** 2     # (miss, covered)
        k = d2.argmin(1)
        tri[miss] = np.where(d2[np.arange(len(k)), k] <= snap_px ** 2, fid[ys[k], xs[k]], -1)
    return tri


def _render_views(model: FaceModel, views, size: int, context: RenderContext | None | str
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """The mean face rendered from each (yaw, pitch) of ``views`` (half the image tall, 20 deg field of
    view) -> ``([(image, triangle ids)], [projected vertices (N, 2) px])``."""
    from .render import intrinsics, project

    if isinstance(context, str):
        context = builtin_render_context(model)
    mean = np.asarray(model.mean_shape, np.float64)
    centre = 0.5 * (mean.min(0) + mean.max(0))
    K = intrinsics(size, size, fov_deg=20.0)
    dist = K[0, 0] * float(np.ptp(mean[:, 1])) / (0.5 * size)   # the face is half the image tall
    renders, projections = [], []
    for yaw, pitch in views:
        R = view_rotation(yaw, pitch)
        t = np.array([0.0, 0.0, dist]) - R @ centre
        renders.append(render_view(model, context, R, t, K, size))
        projections.append(project(mean @ R.T + t, K))
    return renders, projections


def build_correspondence(model: FaceModel, views=DEFAULT_VIEWS, size: int = 512, min_views: int = 2,
                         context: RenderContext | None | str = "auto") -> FaceCorrespondence:
    """Measure the MediaPipe-468 correspondence of ``model`` by running MediaPipe on renders of it.

    ``views``: (yaw, pitch) degrees of the rendered mean face; ``size``: render side in px;
    ``context``: scenery around the face (``"auto"``: :func:`builtin_render_context`).
    Raises :class:`ModelFileError` if MediaPipe finds the face in fewer than ``min_views``
    renders or some landmark is never traced to the surface.
    """
    src = model.source or model.kind
    mean = np.asarray(model.mean_shape, np.float64)
    faces = np.asarray(model.faces, np.int64)
    renders, projections = _render_views(model, views, size, context)

    detections = detect_face_mesh([img for img, _ in renders])
    samples_tri, samples_bary, samples_pt = [], [], []       # per view: (468,), (468,3), (468,3)
    for (img, fid), lm, proj in zip(renders, detections, projections):
        if lm is None:
            continue
        tri = _trace(lm, fid, snap_px=0.01 * size)
        ok = tri >= 0
        bary = np.zeros((NUM_MP_LANDMARKS, 3))
        bary[ok] = _barycentric(lm[ok], proj[faces[tri[ok]]])
        pts = np.full((NUM_MP_LANDMARKS, 3), np.nan)
        pts[ok] = (mean[faces[tri[ok]]] * bary[ok, :, None]).sum(1)
        samples_tri.append(tri)
        samples_bary.append(bary)
        samples_pt.append(pts)
    if len(samples_pt) < min_views:
        raise ModelFileError(src, None, f"MediaPipe found the rendered face in {len(samples_pt)} of {len(views)} "
                             f"views (need {min_views}); cannot build the landmark correspondence")
    P = np.stack(samples_pt)                                 # (V, 468, 3), NaN where untraced
    T = np.stack(samples_tri)                                # (V, 468)
    Bc = np.stack(samples_bary)                              # (V, 468, 3)
    n_ok = np.isfinite(P[..., 0]).sum(0)
    if (n_ok == 0).any():
        bad = np.nonzero(n_ok == 0)[0][:10].tolist()
        raise ModelFileError(src, None, f"MediaPipe landmarks {bad} never fall on the rendered face")
    med = np.nanmedian(P, axis=0)                            # (468, 3)
    dist_to_med = np.linalg.norm(P - med[None], axis=-1)     # (V, 468), NaN where untraced
    best = np.nanargmin(np.where(np.isfinite(dist_to_med), dist_to_med, np.inf), axis=0)
    idx = np.arange(NUM_MP_LANDMARKS)
    tri_best = T[best, idx]
    vertex_ids = faces[tri_best]
    bary = Bc[best, idx]

    # reliability: robust spread of the per-view samples relative to the eye-corner distance
    # (median, so that a view where the point is seen through the lip gap, deep in the mouth,
    # does not decide it) times the fraction of views that agree with the median
    iod = float(np.linalg.norm(med[33] - med[263]))
    spread = np.nanmedian(dist_to_med, axis=0)                                  # (468,)
    agree = (np.where(np.isfinite(dist_to_med), dist_to_med, np.inf) <= OUTLIER_FRACTION * iod).sum(0) / len(P)
    weights = np.exp(-((spread / (SPREAD_SCALE * iod)) ** 2)) * np.minimum(1.0, agree / 0.5)
    weights[_oval_indices()] *= OVAL_WEIGHT
    weights = np.clip(weights, MIN_WEIGHT, 1.0)
    return FaceCorrespondence(vertex_ids=vertex_ids.astype(np.int64), bary=bary.astype(np.float32),
                              weights=weights.astype(np.float32), model_signature=model_signature(model),
                              spread_m=spread.astype(np.float32))


def build_mirror_table(model: FaceModel, views=DEFAULT_VIEWS, size: int = 512,
                       context: RenderContext | None | str = "auto") -> np.ndarray:
    """MediaPipe's left/right mirror table ``(468,)`` (``assets/face_mp468_mirror.npz``, read by
    :func:`.symmetry.load_mirror_table`), measured: the
    face mesh runs on renders of ``model`` and on their left/right flips; the flipped image's points,
    reflected back, are matched one to one with the render's (``scipy.optimize.linear_sum_assignment``
    on the pixel distances) and each landmark takes the partner most views agree on.  Raises
    :class:`ModelFileError` unless the result is an involution found in at least 2 views."""
    from scipy.optimize import linear_sum_assignment

    src = model.source or model.kind
    imgs = [img for img, _ in _render_views(model, views, size, context)[0]]
    found = detect_face_mesh(imgs + [np.ascontiguousarray(img[:, ::-1]) for img in imgs])
    votes = []
    for a, b in zip(found[:len(imgs)], found[len(imgs):]):
        if a is None or b is None:
            continue
        b = b * np.array([-1.0, 1.0]) + np.array([size - 1.0, 0.0])           # back into the render's pixels
        _, partner = linear_sum_assignment(np.linalg.norm(a[:, None] - b[None], axis=-1))
        votes.append(partner)
    if len(votes) < 2:
        raise ModelFileError(src, None, f"MediaPipe found the rendered face and its flip in {len(votes)} views (need 2)")
    V = np.stack(votes)
    mirror = np.array([np.bincount(V[:, i], minlength=NUM_MP_LANDMARKS).argmax() for i in range(NUM_MP_LANDMARKS)])
    if (mirror[mirror] != np.arange(NUM_MP_LANDMARKS)).any():
        raise ModelFileError(src, None, "the measured MediaPipe mirror table is not an involution")
    return mirror.astype(np.int64)
