"""Per-frame 3DMM face fitting by analysis-by-synthesis (the reference FaceNet must match).

Unknowns (paper Eq. 3-5): per frame the head pose (rotation as 6D, translation),
the expression and 27 SH lighting coefficients; per clip the identity and the
albedo.  They are fitted with Adam (torch) on

* a **landmark term**: MediaPipe's 468 face landmarks against the 3DMM surface
  points tied to them by :mod:`face_correspondence` (robust Charbonnier, per
  point reliability weights, down-weighted where the surface faces away);
* a **photometric term** (as MoFA): the image is sampled bilinearly at the
  projected vertices that are visible (facing the camera, not behind other
  vertices in a coarse z-buffer, inside MediaPipe's face oval and outside its
  eyes/lips), and compared with the rendered colour albedo x SH irradiance;
* **priors**: Gaussian priors on identity/albedo/expression coefficients (the
  bases are in standard-deviation units), a pull of the lighting towards white
  ambient light and a penalty on coloured light.

Camera: full perspective, ``K`` from the image (see :func:`face_render.intrinsics`)
unless the caller gives the focal length.  Poses map face-model space (Y up,
face looking +Z, metres) to camera space (x right, y down, z forward):
``x_cam = R @ x_model + t``.  SH lighting is in camera axes.

Video mode: pass the returned ``state`` back in.  The pose, expression and
lighting are warm-started from the previous frame and refined with a few
iterations.  Identity and albedo are optimised on the first
``config.identity_frames`` frames that fit, and their running mean over those
frames is kept; after that they are frozen (a clip's person does not change).

Example::

    fitter = FaceFitter(load_face_model())
    state = None
    for frame, det in frames:
        res = fitter.fit(frame, det.face_landmarks, det.face_box, state)
        state = res.state
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..models.face_model import NUM_SH, FaceModel, face_albedo, face_geometry, sh_shading, vertex_normals
from ..core.rotations import matrix_to_rot6d, rot6d_to_matrix
from ..geometry import alignment
from .correspondence import MP468_TO_IBUG68, NUM_MP_LANDMARKS, FaceCorrespondence, correspondence_for
from .landmarks import MP_LEFT_EYE_RING, MP_RIGHT_EYE_RING, FACE_OVAL
from .render import intrinsics, outward_sign, project
from .skin import MIN_SKIN_SHARE, skin_weight

# MediaPipe face-mesh regions (index loops) used to mask the photometric term.
_MP_FACE_OVAL = FACE_OVAL
_MP_LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
_MP_LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
_MP_RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)


def skin_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """The photometric term's mask of MediaPipe's ``landmarks (468, >=2)`` px: ``(height, width)`` uint8,
    1 inside the face oval, 0 on the eyes, brows and lips and elsewhere."""
    import cv2

    mask = np.zeros((height, width), np.uint8)
    poly = lambda idx: np.round(landmarks[list(idx), :2]).astype(np.int32)  # noqa: E731
    cv2.fillPoly(mask, [poly(_MP_FACE_OVAL)], 1)
    cv2.fillPoly(mask, [poly(i) for i in (MP_LEFT_EYE_RING, MP_RIGHT_EYE_RING, _MP_LIPS_OUTER, _MP_LEFT_BROW,
                                          _MP_RIGHT_BROW)], 0)
    return mask


@dataclass(frozen=True)
class FaceFitConfig:
    """Iterations, learning rates and term weights (defaults tuned on synthetic renders and
    non-benchmark images: mmpose 300W/COCO faces, talking-head clips)."""

    iters_pose: int = 25            # first frame: pose only, landmarks
    iters_shape: int = 40           # first frame: + identity/expression, landmarks
    iters_full: int = 30            # first frame: + photometric, lighting, albedo
    iters_track: int = 12           # warm-started video frames, everything at once
    identity_frames: int = 20       # frames whose identity/albedo are averaged, then frozen
    w_landmark: float = 1.0
    w_photo: float = 0.1
    w_identity: float = 2e-3
    w_expression: float = 1e-3
    w_expression_l1: float = 3e-2  # sparsity of box-constrained (blendshape) expressions: sum |e|
    w_albedo: float = 2e-3
    w_sh: float = 1e-2
    w_temporal: float = 5e-2        # expression change between frames (video mode only)
    landmark_sigma: float = 0.01    # Charbonnier scale, fraction of the face size
    photo_sigma: float = 0.05       # colour residual scale (linear RGB)
    sh_ambient_hold: float = 10.0   # closed-form SH: ridge on the ambient band (x visible vertices)
    max_photo_vertices: int = 2500  # vertices sampled for the photometric term
    zbuffer_size: int = 96          # coarse vertex z-buffer side (visibility)
    lr: float = 0.05


@dataclass
class FaceFitState:
    """What carries over between frames of one clip (all numpy, float32).

    identity ``(Ki,)``, albedo ``(Ka,)``: running means over ``n_identity`` frames;
    rotation ``(3, 3)``, translation ``(3,)``, expression ``(Ke,)``, sh ``(27,)``: last frame.
    """

    identity: np.ndarray
    albedo: np.ndarray
    n_identity: int
    rotation: np.ndarray
    translation: np.ndarray
    expression: np.ndarray
    sh: np.ndarray


@dataclass
class FaceResult:
    """One frame's fit.  Shapes: identity ``(Ki,)``, albedo ``(Ka,)``, expression ``(Ke,)``,
    sh ``(27,)`` (3 channels x 9, camera axes), rotation ``(3, 3)`` and translation ``(3,)``
    (face model -> camera, metres), landmarks68_px ``(68, 2)`` (iBUG-68 points of the fitted
    mesh, projected), ``ok`` False when nothing could be fitted (then ``message`` says why and
    the parameters are the previous frame's, or the mean face).  ``landmark_error_px``: mean
    distance of the fitted surface points to MediaPipe's landmarks."""

    identity: np.ndarray
    albedo: np.ndarray
    expression: np.ndarray
    sh: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    landmarks68_px: np.ndarray
    ok: bool
    state: FaceFitState | None
    message: str = ""
    landmark_error_px: float = float("nan")
    extras: dict = field(default_factory=dict)


#: the photometric window (:meth:`FaceFitter._context`) reaches this share of the landmarks' extent (+4 px)
#: beyond them: the face mask ends at the face oval, bilinear samples need one pixel beyond it
CROP_PAD: float = 0.1
#: SH band-0 level of white ambient light with irradiance 1 (band 0 of :func:`sh_basis` is 0.886)
UNIT_AMBIENT: float = 1.0 / 0.8862269


def ambient_sh(level: float = 0.8) -> np.ndarray:
    """SH ``(27,)`` of white ambient light (irradiance ~0.71 * level / 0.8 everywhere)."""
    mu = np.zeros((3, NUM_SH), np.float32)
    mu[:, 0] = level
    return mu.ravel()


class FaceFitter:
    """Analysis-by-synthesis 3DMM fitting for one face model (see the module docstring).

    ``face_model``: any :class:`FaceModel` (built-in or BFM); ``correspondence``: defaults to
    :func:`face_correspondence.correspondence_for`; ``expression_range``: box constraint of the
    expression coefficients, default ``(0, 1)`` for the built-in face (ARKit weights) and none
    for PCA expression bases.  ``focal_px``: camera focal length if known (else
    :data:`.render.FACE_CROP_FOV_DEG` across the image).
    ``landmarks68``: where :attr:`FaceResult.landmarks68_px` are read off the fitted mesh:
    ``"model"``: the model's own ``landmarks68`` vertex ids; ``"correspondence"``: the
    correspondence points of MediaPipe's standard 468->68 indices (measured on renders, so
    they follow the iBUG convention as a landmark detector sees it); ``"auto"``: the model's
    ids for a BFM model that has all 68, otherwise the correspondence (the built-in face's
    ids are geometric heuristics: its brows sit ~1 cm high, see docs/evaluation_face.md).
    """

    def __init__(self, face_model: FaceModel, device: str = "cpu", *,
                 correspondence: FaceCorrespondence | None = None, config: FaceFitConfig | None = None,
                 expression_range: tuple[float, float] | None | str = "auto", focal_px: float | None = None,
                 landmarks68: str = "auto"):
        self.model = face_model
        self.device = torch.device(device)
        self.config = config or FaceFitConfig()
        self.corr = (correspondence or correspondence_for(face_model)).check(face_model)
        self.focal_px = focal_px
        if expression_range == "auto":
            expression_range = (0.0, 1.0) if face_model.kind == "builtin" else None
        self.expression_range = expression_range
        t = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a), dtype=dt, device=self.device)  # noqa: E731
        self._mean, self._id_b, self._exp_b = t(face_model.mean_shape), t(face_model.id_basis), t(face_model.exp_basis)
        self._alb_mean, self._alb_b = t(face_model.mean_albedo), t(face_model.albedo_basis)
        self._faces = t(face_model.faces, torch.long)
        self._sign = outward_sign(face_model)
        self._corr_w = t(self.corr.weights)
        # photometric vertex subset: an even stride over vertices with a usable albedo
        n = face_model.num_vertices
        step = max(1, int(np.ceil(n / self.config.max_photo_vertices)))
        self._photo_idx = torch.arange(0, n, step, device=self.device)
        if landmarks68 not in ("auto", "model", "correspondence"):
            raise ValueError(f"landmarks68 must be 'auto', 'model' or 'correspondence', got {landmarks68!r}")
        lm68 = np.asarray(face_model.landmarks68)
        if landmarks68 == "correspondence" or (
                landmarks68 == "auto" and not (face_model.kind == "bfm" and (lm68 >= 0).all())):
            lm68 = np.full(68, -1, np.int64)              # every point from the correspondence
        self._lm68_vertex = t(np.where(lm68 >= 0, lm68, 0), torch.long)
        self._lm68_has_vertex = t(lm68 >= 0, torch.bool)
        self._lm68_mp = t(MP468_TO_IBUG68, torch.long)
        self.sizes = face_model.sizes
        # torch.optim's first optimiser imports torch._dynamo (~1.2 s, once per process); pay it
        # here, before a clip starts, rather than inside the first frame's fit
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    # ------------------------------------------------------------------ public API
    def fit(self, image_bgr: np.ndarray, landmarks_px: np.ndarray | None, face_box=None,
            state: FaceFitState | None = None, hold_identity: bool = False) -> FaceResult:
        """Fit one frame.

        image_bgr ``(H, W, 3)`` uint8; landmarks_px ``(468, 3)`` MediaPipe face-mesh landmarks
        (x, y px, z relative depth in px) or None; face_box ``(4,)`` x, y, w, h px (optional, only
        used as the face size when given); state: the previous frame's ``FaceResult.state``
        (None for a single image or a clip's first frame), or a state seeded from a
        :class:`face_tracker.FaceTrack` (pose, expression, identity) with ``n_identity = 0``: then
        the lighting is first solved in closed form and the three-stage start is skipped.
        ``hold_identity``: keep ``state.identity`` as it is (the tracker owns it) while albedo,
        lighting, pose and expression are fitted.  Never raises on a frame without a usable
        face: returns ``ok=False`` and the previous state instead.
        """
        problem = self._check_inputs(image_bgr, landmarks_px)
        if problem:
            return self._failed(problem, state)
        lm = np.asarray(landmarks_px, np.float64)[:, :3]
        ctx = self._context(image_bgr, lm, face_box)
        K = ctx.K.double().cpu().numpy()
        tracking = state is not None
        fit_identity = state is None or state.n_identity < self.config.identity_frames
        init = state or self._initial_state(lm, K)
        params = self._make_params(init)
        c = self.config
        if tracking:
            if state.n_identity == 0:                     # seeded by the tracker: no lighting yet
                with torch.no_grad():
                    params["sh"].copy_(self._solve_sh(params, ctx))
            learnt = (("albedo",) if hold_identity else ("identity", "albedo")) if fit_identity else ()
            self._optimise(params, ctx, c.iters_track, free=("pose", "expression", "sh") + learnt, photo=True,
                           prev_expression=torch.as_tensor(state.expression, device=self.device))
        else:
            self._optimise(params, ctx, c.iters_pose, free=("pose",), photo=False)
            self._optimise(params, ctx, c.iters_shape, free=("pose", "expression", "identity"), photo=False)
            with torch.no_grad():
                params["sh"].copy_(self._solve_sh(params, ctx))
            self._optimise(params, ctx, c.iters_full, free=("pose", "expression", "identity", "sh", "albedo"),
                           photo=True)
        return self._result(params, ctx, state, fit_identity)

    def fit_appearance(self, image_bgr: np.ndarray, landmarks_px: np.ndarray | None, face_box,
                       state: FaceFitState, rounds: int = 2) -> FaceResult:
        """Albedo and lighting in closed form for a known pose, expression and identity (``state``,
        e.g. seeded from a :class:`face_tracker.FaceTrack`): alternating ridge regressions of the
        sampled colours (the photometric term's visible skin vertices) on Eq. 4-5, the albedo given
        the SH (white unit ambient light on a clip's first keyframe), then the SH given the albedo,
        ``rounds`` times, then the SH once more.  Pose,
        expression and identity are returned unchanged.  The albedo is the running mean over the
        first ``config.identity_frames`` calls (``state.n_identity`` counts them), then frozen.
        ~10-30 ms on one CPU core (vs 0.1-1 s for :meth:`fit`); ``ok=False`` as :meth:`fit`.
        """
        problem = self._check_inputs(image_bgr, landmarks_px)
        if problem:
            return self._failed(problem, state)
        ctx = self._context(image_bgr, np.asarray(landmarks_px, np.float64)[:, :3], face_box)
        learn = state.n_identity < self.config.identity_frames
        params = self._make_params(state)
        with torch.no_grad():
            if learn and state.n_identity == 0:      # a clip's first keyframe: start from white unit light
                params["sh"].copy_(torch.as_tensor(ambient_sh(UNIT_AMBIENT), device=self.device))
            for _ in range(rounds if learn else 0):
                # albedo first: solving the light first from the mean albedo let its directional
                # bands take the skin's colour difference, and the albedo kept ~85 % of the mean's
                params["albedo"].copy_(self._solve_albedo(params, ctx))
                params["sh"].copy_(self._solve_sh(params, ctx))
            params["sh"].copy_(self._solve_sh(params, ctx))
        return self._result(params, ctx, state, learn)

    # ------------------------------------------------------------------ pieces
    def _context(self, image_bgr: np.ndarray, lm: np.ndarray, face_box) -> "_FrameContext":
        """Per-frame tensors for landmarks ``lm (468, 3)`` px (see :class:`_FrameContext`)."""
        H, W = image_bgr.shape[:2]
        K = intrinsics(W, H, self.focal_px)
        xy = lm[:, :2]
        lo, hi = xy.min(0), xy.max(0)
        if face_box is not None and np.all(np.isfinite(face_box)) and face_box[2] > 1 and face_box[3] > 1:
            face_size = float(np.sqrt(face_box[2] * face_box[3]))
        else:
            face_size = float(np.sqrt(np.prod(np.maximum(hi - lo, 1.0))))
        # only the window around the face is converted: the photometric samples lie inside the face oval
        # (the mask), and a 1080p frame's conversion cost 60 ms of a keyframe fit's ~110
        pad = CROP_PAD * (hi - lo).max() + 4.0
        x0, y0 = (int(v) for v in np.clip(np.floor(lo - pad), 0, [W - 1, H - 1]))
        x1, y1 = (int(v) for v in np.clip(np.ceil(hi + pad) + 1, [x0 + 1, y0 + 1], [W, H]))
        photo_mask = skin_mask(lm - (x0, y0, 0)[:lm.shape[1]], y1 - y0, x1 - x0).astype(np.float32)
        crop = image_bgr[y0:y1, x0:x1, ::-1]
        image_lin = torch.as_tensor(crop.astype(np.float32) / 255.0, device=self.device) ** 2.2
        return _FrameContext(image=image_lin.permute(2, 0, 1)[None].contiguous(),
                             mask=torch.as_tensor(photo_mask, device=self.device)[None, None],
                             K=torch.as_tensor(K, dtype=torch.float32, device=self.device),
                             width=x1 - x0, height=y1 - y0,
                             target=torch.as_tensor(xy, dtype=torch.float32, device=self.device),
                             face_size=face_size, origin=(float(x0), float(y0)))

    def _check_inputs(self, image_bgr, landmarks_px) -> str:
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 \
                or image_bgr.dtype != np.uint8 or min(image_bgr.shape[:2]) < 8:
            return f"image must be (H, W, 3) uint8 BGR, got {getattr(image_bgr, 'shape', type(image_bgr))}"
        if landmarks_px is None:
            return "no face landmarks"
        lm = np.asarray(landmarks_px)
        if lm.ndim != 2 or lm.shape[0] != NUM_MP_LANDMARKS or lm.shape[1] not in (2, 3):
            return f"landmarks must be ({NUM_MP_LANDMARKS}, 3), got {lm.shape}"
        if not np.all(np.isfinite(lm)):
            return "landmarks contain NaN/inf"
        span = lm[:, :2].max(0) - lm[:, :2].min(0)
        if span.min() < 4:
            return f"face landmarks span only {span.min():.1f} px"
        return ""

    def _failed(self, message: str, state: FaceFitState | None) -> FaceResult:
        s = state or self._mean_state()
        return FaceResult(identity=s.identity.copy(), albedo=s.albedo.copy(), expression=s.expression.copy(),
                          sh=s.sh.copy(), rotation=s.rotation.copy(), translation=s.translation.copy(),
                          landmarks68_px=np.full((68, 2), np.nan, np.float32), ok=False, state=state,
                          message=message)

    def _mean_state(self) -> FaceFitState:
        z = lambda n: np.zeros(n, np.float32)  # noqa: E731
        return FaceFitState(identity=z(self.sizes["identity"]), albedo=z(self.sizes["albedo"]), n_identity=0,
                            rotation=np.diag([1.0, -1.0, -1.0]).astype(np.float32),
                            translation=np.array([0, 0, 0.6], np.float32),
                            expression=z(self.sizes["expression"]), sh=ambient_sh())

    def _initial_state(self, lm: np.ndarray, K: np.ndarray) -> FaceFitState:
        """Pose from a weighted 3D similarity between the mean face's landmark points and
        MediaPipe's (x, y, z) landmarks; depth from the scale (px per metre = f / z)."""
        s0 = self._mean_state()
        src = self.corr.points(np.asarray(self.model.mean_shape, np.float64)[None])[0]
        w = self.corr.weights.astype(np.float64)
        dst = lm.copy()
        if np.ptp(dst[:, 2]) < 1e-6:                     # no depth: start frontal, fit scale/shift in 2D
            R = s0.rotation.astype(np.float64)
            P = src @ R.T
            A = np.c_[P[:, :2].reshape(-1, 1), np.tile(np.eye(2), (len(P), 1))]
            sol = np.linalg.lstsq(A * np.repeat(w, 2)[:, None], dst[:, :2].reshape(-1) * np.repeat(w, 2),
                                  rcond=None)[0]
            s, shift = sol[0], sol[1:]
            mu_d = np.r_[shift + s * (w @ P[:, :2]) / w.sum(), 0.0]
            mu_s_cam = R @ ((w @ src) / w.sum())
        else:
            fit = alignment.fit_similarity(src, dst, w)
            R, s = fit.R, float(fit.scale)
            mu_d = (w @ dst) / w.sum()
            mu_s_cam = R @ ((w @ src) / w.sum())
        f = K[0, 0]
        z = f / max(s, 1e-6)                              # depth of the landmark centroid
        centre_cam = np.array([(mu_d[0] - K[0, 2]) * z / f, (mu_d[1] - K[1, 2]) * z / f, z])
        t = centre_cam - mu_s_cam
        return replace(s0, rotation=R.astype(np.float32), translation=t.astype(np.float32))

    def _make_params(self, s: FaceFitState) -> dict[str, torch.Tensor]:
        d = self.device
        t = lambda a: torch.tensor(np.asarray(a, np.float32), device=d)  # noqa: E731
        tz0 = float(s.translation[2])
        return {
            "rot6d": t(matrix_to_rot6d(np.asarray(s.rotation, np.float64))),
            # translation as (x/z0, y/z0, log z/z0) so that one unit is comparable on all axes
            "trans": t([s.translation[0] / tz0, s.translation[1] / tz0, 0.0]),
            "_tz0": t([tz0]),
            "identity": t(s.identity), "expression": t(s.expression),
            "albedo": t(s.albedo), "sh": t(s.sh),
        }

    def _pose(self, p) -> tuple[torch.Tensor, torch.Tensor]:
        R = rot6d_to_matrix(p["rot6d"])
        z = p["_tz0"][0] * torch.exp(p["trans"][2])
        return R, torch.stack([p["trans"][0] * p["_tz0"][0], p["trans"][1] * p["_tz0"][0], z])

    def _geometry(self, p) -> torch.Tensor:
        """Model-space vertices ``(N, 3)``."""
        return face_geometry(self._mean, self._id_b, self._exp_b, p["identity"][None], p["expression"][None])[0]

    def _visible(self, cam: torch.Tensor, px: torch.Tensor, normals: torch.Tensor, ctx) -> torch.Tensor:
        """``(V,)`` float visibility of vertices (no gradient): facing the camera and no
        more than 10% of the face's depth range behind the nearest vertex of its coarse z-buffer cell."""
        with torch.no_grad():
            view = cam / cam.norm(dim=-1, keepdim=True)
            facing = (normals * view).sum(-1) < -0.05
            g = self.config.zbuffer_size
            lo, hi = px.min(0).values, px.max(0).values
            cell = ((px - lo) / (hi - lo).clamp_min(1e-6) * (g - 1)).round().long().clamp(0, g - 1)
            key = cell[:, 1] * g + cell[:, 0]
            z = torch.where(facing, cam[:, 2], torch.full_like(cam[:, 2], float("inf")))
            zmin = torch.full((g * g,), float("inf"), device=cam.device).scatter_reduce(0, key, z, reduce="amin")
            depth_range = (cam[:, 2].max() - cam[:, 2].min()).clamp_min(1e-6)
            front = z <= zmin[key] + 0.1 * depth_range
            return (facing & front).float()

    def _sample(self, img: torch.Tensor, px: torch.Tensor, ctx) -> torch.Tensor:
        """Bilinear samples of ``img`` ``(1, C, H, W)`` at px ``(V, 2)`` -> ``(V, C)`` (0 outside)."""
        g = torch.stack([(px[:, 0] - ctx.origin[0]) / ctx.width * 2 - 1,
                         (px[:, 1] - ctx.origin[1]) / ctx.height * 2 - 1], -1)
        return torch.nn.functional.grid_sample(img, g[None, None], mode="bilinear", padding_mode="zeros",
                                               align_corners=False)[0, :, 0].T

    def _terms(self, p, ctx, photo: bool, prev_expression=None) -> dict[str, torch.Tensor]:
        c = self.config
        R, t = self._pose(p)
        verts = self._geometry(p)
        cam = verts @ R.T + t                                         # (N, 3)
        px = project(cam, ctx.K)                                      # (N, 2)
        normals = self._sign * vertex_normals(verts[None], self._faces)[0] @ R.T
        # landmark term
        lm_px = self.corr.points(px[None])[0]                         # (468, 2) (projection is ~affine locally)
        lm_n = self.corr.points(normals[None])[0]
        lm_view = self.corr.points(cam[None])[0]
        cosv = -(lm_n * lm_view).sum(-1) / (lm_n.norm(dim=-1) * lm_view.norm(dim=-1)).clamp_min(1e-8)
        w = self._corr_w * (0.3 + 0.7 * cosv.detach().clamp(0, 1))
        r2 = ((lm_px - ctx.target) ** 2).sum(-1) / (c.landmark_sigma * ctx.face_size) ** 2
        terms = {"landmark": c.w_landmark * (w * (torch.sqrt(1 + r2) - 1)).sum() / w.sum()}
        terms["identity"] = c.w_identity * (p["identity"] ** 2).sum()
        terms["expression"] = c.w_expression * (p["expression"] ** 2).sum()
        if self.expression_range is not None and c.w_expression_l1 > 0:
            terms["expression_l1"] = c.w_expression_l1 * p["expression"].abs().sum()
        if self.expression_range is not None:          # smooth box penalty (L-BFGS has no bounds)
            lo, hi = self.expression_range
            e = p["expression"]
            terms["range"] = 100.0 * ((lo - e).clamp_min(0) ** 2 + (e - hi).clamp_min(0) ** 2).sum()
        if prev_expression is not None:
            terms["temporal"] = c.w_temporal * ((p["expression"] - prev_expression) ** 2).sum()
        if photo:
            idx = self._photo_idx
            vis = self._visible(cam[idx], px[idx], normals[idx], ctx)
            inside = self._sample(ctx.mask, px[idx], ctx)[:, 0].detach()
            wv = vis * (inside > 0.5).float()
            if wv.sum() >= 20:
                refl = face_albedo(self._alb_mean[idx], self._alb_b[idx], p["albedo"][None])
                col = sh_shading(refl, normals[idx][None], p["sh"][None])[0]
                obs = self._sample(ctx.image, px[idx], ctx)
                err = torch.sqrt(((obs - col) ** 2).sum(-1) + 1e-8) / c.photo_sigma   # L2,1 as in MoFA
                terms["photo"] = c.w_photo * (wv * err).sum() / wv.sum()
            terms["albedo"] = c.w_albedo * (p["albedo"] ** 2).sum()
            mu = p["sh"].view(3, NUM_SH)
            amb = torch.as_tensor(ambient_sh(), device=self.device).view(3, NUM_SH)
            terms["sh"] = c.w_sh * (((mu - amb) ** 2).sum() + 10 * ((mu - mu.mean(0, keepdim=True)) ** 2).sum())
        return terms

    def _optimise(self, p, ctx, iters: int, free: tuple[str, ...], photo: bool, prev_expression=None,
                  lr_factor: float = 1.0) -> None:
        """Minimise the energy over the ``free`` groups in place.

        Landmark-only stages (smooth, cheap) use L-BFGS with a strong-Wolfe line search;
        stages with the photometric term (noisy visibility, many samples) use Adam.
        Expression coefficients are projected onto ``expression_range`` after each step.
        """
        names = [n for n, group in (("rot6d", "pose"), ("trans", "pose"), ("identity", "identity"),
                                    ("expression", "expression"), ("albedo", "albedo"), ("sh", "sh"))
                 if group in free and p[n].numel()]
        if not names or iters <= 0:
            return
        for n in names:
            p[n].requires_grad_(True)

        def energy():
            return sum(self._terms(p, ctx, photo, prev_expression).values())

        def project_expression():
            if self.expression_range is not None and "expression" in names:
                with torch.no_grad():
                    p["expression"].clamp_(*self.expression_range)

        if not photo:
            opt = torch.optim.LBFGS([p[n] for n in names], lr=1.0, max_iter=iters, history_size=20,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

            def closure():
                opt.zero_grad(set_to_none=True)
                loss = energy()
                loss.backward()
                return loss
            opt.step(closure)
            project_expression()
        else:
            lr_scale = {"rot6d": 0.2, "trans": 0.1, "identity": 1.0, "expression": 1.0, "albedo": 1.0, "sh": 0.3}
            opt = torch.optim.Adam([{"params": [p[n]], "lr": self.config.lr * lr_factor * lr_scale[n]}
                                    for n in names])
            for _ in range(iters):
                opt.zero_grad(set_to_none=True)
                energy().backward()
                opt.step()
                project_expression()
        for n in names:
            p[n].requires_grad_(False)

    def _photo_samples(self, p, ctx):
        """The photometric vertices under the current parameters: ``(idx (V,), px (N, 2), normals (N, 3),
        vis (V,), obs (V, 3), share)`` with ``px``/``normals`` for all N vertices (camera frame), ``vis`` in
        {0, 1} for ``idx`` (front-facing, not occluded, inside the face mask, a skin colour: :mod:`.skin`),
        ``obs`` their sampled linear colours and ``share`` the skin share of the visible ones."""
        R, t = self._pose(p)
        idx = self._photo_idx
        verts = self._geometry(p)
        cam = verts @ R.T + t
        px = project(cam, ctx.K)
        normals = self._sign * vertex_normals(verts[None], self._faces)[0] @ R.T
        vis = self._visible(cam[idx], px[idx], normals[idx], ctx) * \
            (self._sample(ctx.mask, px[idx], ctx)[:, 0] > 0.5).float()
        obs = self._sample(ctx.image, px[idx], ctx)
        skin = vis * skin_weight(obs)
        return idx, px, normals, skin, obs, float(skin.sum() / vis.sum().clamp(min=1.0))

    def _solve_sh(self, p, ctx) -> torch.Tensor:
        """Closed-form lighting for the current shape/pose/albedo: ridge regression of the sampled
        colours on albedo x SH basis -> ``(27,)``.  The light is white (one 9-vector for the three
        channels) and its ambient level (band 0) is held near :data:`UNIT_AMBIENT` (irradiance 1),
        so the skin's colour and brightness go into the albedo, not into the light: the albedo is
        the colour the image shows, what the avatar shows under another light (Blender's).  The directional bands are free (ridge
        ``1e-2 V``)."""
        from ..models.face_model import sh_basis

        idx, px, normals, vis, obs, _ = self._photo_samples(p, ctx)
        prior = torch.as_tensor(ambient_sh(UNIT_AMBIENT), device=self.device).view(3, NUM_SH)
        if vis.sum() < 20:
            return prior.reshape(-1)
        refl = face_albedo(self._alb_mean[idx], self._alb_b[idx], p["albedo"][None])[0]     # (V, 3)
        Hb = sh_basis(normals[idx])                                                        # (V, 9)
        A = (Hb[None] * (refl.T * vis[None])[..., None]).reshape(-1, NUM_SH)              # (3V, 9)
        b = (obs.T * vis[None]).reshape(-1)                                                # (3V,)
        lam = torch.full((NUM_SH,), 1e-2, device=self.device) * vis.sum()
        lam[0] = self.config.sh_ambient_hold * vis.sum()
        M = A.T @ A + torch.diag(lam)
        white = torch.linalg.solve(M, A.T @ b + lam * prior[0])
        return white[None].expand(3, NUM_SH).reshape(-1).contiguous()

    def _solve_albedo(self, p, ctx) -> torch.Tensor:
        """Closed-form albedo for the current shape/pose/lighting: ridge regression of the sampled
        colours on the albedo basis x SH irradiance (Eq. 4-5 are linear in the albedo) -> ``(Ka,)``.
        The ridge weight is the fitter's albedo prior over its photometric term's scale
        (``w_albedo photo_sigma^2 V / w_photo`` for V visible vertices)."""
        from ..models.face_model import sh_basis

        c = self.config
        idx, px, normals, vis, obs, share = self._photo_samples(p, ctx)
        if vis.sum() < 20 or share < MIN_SKIN_SHARE:                # not the skin: the albedo stays
            return p["albedo"].clone()
        irr = sh_basis(normals[idx]) @ p["sh"].view(3, NUM_SH).T                          # (V, 3)
        A = self._alb_b[idx] * (irr * vis[:, None])[..., None]                              # (V, 3, Ka)
        b = (obs - self._alb_mean[idx] * irr) * vis[:, None]                                # (V, 3)
        lam = c.w_albedo * c.photo_sigma ** 2 * float(vis.sum()) / max(c.w_photo, 1e-12)
        M = torch.einsum("vck,vcl->kl", A, A) + lam * torch.eye(A.shape[-1], device=self.device)
        return torch.linalg.solve(M, torch.einsum("vck,vc->k", A, b))

    def _result(self, p, ctx, state: FaceFitState | None, fit_identity: bool) -> FaceResult:
        with torch.no_grad():
            R, t = self._pose(p)
            verts = self._geometry(p)
            px = project(verts @ R.T + t, ctx.K)
            lm_px = self.corr.points(px[None])[0]
            err = float((lm_px - ctx.target).norm(dim=-1).mean())
            lm68 = torch.where(self._lm68_has_vertex[:, None], px[self._lm68_vertex], lm_px[self._lm68_mp])
        npf = lambda a: a.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        identity, albedo = npf(p["identity"]), npf(p["albedo"])
        n = state.n_identity if state is not None else 0
        if fit_identity and state is not None and n > 0:           # running mean over the first frames
            identity = (state.identity * n + identity) / (n + 1)
            albedo = (state.albedo * n + albedo) / (n + 1)
        if not fit_identity and state is not None:                 # frozen: exactly the clip's values
            identity, albedo = state.identity.copy(), state.albedo.copy()
        new_state = FaceFitState(identity=identity, albedo=albedo, n_identity=n + int(fit_identity),
                                 rotation=npf(R), translation=npf(t), expression=npf(p["expression"]),
                                 sh=npf(p["sh"]))
        return FaceResult(identity=identity, albedo=albedo, expression=new_state.expression, sh=new_state.sh,
                          rotation=new_state.rotation, translation=new_state.translation,
                          landmarks68_px=npf(lm68), ok=True, state=new_state, landmark_error_px=err)


@dataclass
class _FrameContext:
    """Per-frame tensors: image ``(1, 3, h, w)`` linear RGB and mask ``(1, 1, h, w)`` of the window around
    the face whose top-left pixel is ``origin`` (x, y) px of the frame (``width``/``height`` = w/h), K
    ``(3, 3)`` and target ``(468, 2)`` in frame px, face_size px."""

    image: torch.Tensor
    mask: torch.Tensor
    K: torch.Tensor
    width: int
    height: int
    target: torch.Tensor
    face_size: float
    origin: tuple[float, float] = (0.0, 0.0)
