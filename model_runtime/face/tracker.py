"""Fast per-frame face tracking: head pose + expression from MediaPipe's 468 landmarks.

The analysis-by-synthesis fit (:mod:`face_fit`) costs 60-800 ms per frame on a
CPU, too slow to run on every captured frame.  This tracker solves the
landmark part of the same energy, with the identity held fixed, by a few
Levenberg-Marquardt (Gauss-Newton) steps in numpy, warm-started from the
previous frame: about 1 ms per frame on one core (docs/face_fitting.md).

Unknowns per frame: rotation ``R`` (updated as ``R <- exp([w]x) R``), translation
``t`` (metres) and the expression ``e`` (``Ke``); optionally the identity (a
clip's first frames, before a full fit has given one).  The 3DMM is linear, so
the landmark points are ``P(e) = L0 + Le e`` with ``L0 (468, 3)`` and
``Le (468, 3, Ke)`` precomputed from the shipped MediaPipe-468 correspondence,
and the Jacobian of the projected points is analytic::

    X = R P + t,   u = f X_xy / X_z + c,   A = du/dX (468, 2, 3)
    du/dw = A (-[R P]x),   du/dt = A,   du/de = A R Le,   du/di = A R Li

Energy (the landmark term and priors of :class:`face_fit.FaceFitter`, same
weights and Charbonnier scale, so both estimate the same thing)::

    E = sum_i w_i rho(|u_i - m_i| / (sigma s)) / sum_i w_i + w_e |e|^2 + w_l1 sum(e)
        + w_t |e - e_prev|^2 (+ w_id |i|^2)

``rho(r) = sqrt(1 + r^2) - 1`` (minimised by IRLS inside the Gauss-Newton
steps), ``w_i`` = correspondence weight x (0.3 + 0.7 cos(normal, view)),
``s`` = face size in px.  Box-constrained (ARKit) expressions stay in
``[lo, hi]`` by a projected Newton step: coefficients at a bound whose gradient
points outwards are held, the others solved, then clamped.

Shapes: landmarks ``(468, 2|3)`` px; ``K (3, 3)``; rotation ``(3, 3)`` maps face-model
space (Y up, face looking +Z) to camera space (x right, y down, z forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.face_model import FaceModel, vertex_normals
from .correspondence import NUM_MP_LANDMARKS, FaceCorrespondence, correspondence_for
from ..geometry import alignment
from .fit import FaceFitConfig
from .render import outward_sign


#: MediaPipe landmark pairs across an opening (upper, lower): inner lips, then the lids of the
#: person's right and left eye.  Their difference vectors are fitted by the gap term.
GAP_PAIRS: np.ndarray = np.array([
    (13, 14), (82, 87), (312, 317), (81, 178), (311, 402),          # inner lips
    (159, 145), (158, 153), (160, 144),                             # lids, person's right eye
    (386, 374), (385, 380), (387, 373),                             # lids, person's left eye
], np.int64)
NUM_LIP_PAIRS = 5


@dataclass(frozen=True)
class FaceTrackerConfig:
    """Iterations and weights.  Term weights default to :class:`FaceFitConfig`'s, except the
    temporal weight: the fitter's Adam takes 12 small steps and its temporal term mostly damps
    noise of the optimiser itself; LM converges, so a light pull suffices."""

    iterations: int = 4             # LM iterations per tracked frame (warm start)
    init_iterations: int = 60       # a clip's first frame / after a lost face (stops early: ~35-50 from a pose guess)
    w_expression: float = FaceFitConfig.w_expression
    w_expression_l1: float = FaceFitConfig.w_expression_l1
    w_identity: float = FaceFitConfig.w_identity
    w_temporal: float = 1e-2
    w_gap_lips: float = 2.0         # openings: inner-lip pairs of GAP_PAIRS (see the module doc) ...
    w_gap_lids: float = 0.5         # ... and eyelid pairs (both: expression only, see ``FaceTracker.track``)
    landmark_sigma: float = FaceFitConfig.landmark_sigma
    damping: float = 1e-3           # LM: lambda x diag(H), raised on a rejected step
    step_tol: float = 1e-4          # stop when the update's max |delta| is below this ...
    energy_rtol: float = 1e-3       # ... or the energy fell by less than this fraction


@dataclass
class FaceTrack:
    """One tracked frame.  rotation ``(3, 3)``, translation ``(3,)`` (face model -> camera),
    expression ``(Ke,)``, identity ``(Ki,)`` (the one used), ``landmark_error_px``: mean
    distance of the model's landmark points to MediaPipe's, ``iterations`` done."""

    rotation: np.ndarray
    translation: np.ndarray
    expression: np.ndarray
    identity: np.ndarray
    landmark_error_px: float
    iterations: int


def _skew(v: np.ndarray) -> np.ndarray:
    """``(..., 3)`` -> cross-product matrices ``(..., 3, 3)``."""
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """Axis-angle ``(3,)`` -> rotation matrix ``(3, 3)``."""
    th = float(np.linalg.norm(w))
    S = _skew(w)
    if th < 1e-9:
        return np.eye(3) + S
    return np.eye(3) + np.sin(th) / th * S + (1 - np.cos(th)) / th ** 2 * (S @ S)


class FaceTracker:
    """Landmark tracker of one face model (see the module docstring).

    ``expression_range``: box of the expression coefficients (``"auto"``: ``(0, 1)`` for
    the built-in face's ARKit weights, none for a PCA basis).  Stateless between calls:
    the caller passes the previous :class:`FaceTrack` (the pipeline's face stage does).
    """

    def __init__(self, face_model: FaceModel, *, correspondence: FaceCorrespondence | None = None,
                 config: FaceTrackerConfig | None = None,
                 expression_range: tuple[float, float] | None | str = "auto"):
        self.model = face_model
        self.config = config or FaceTrackerConfig()
        self.corr = (correspondence or correspondence_for(face_model)).check(face_model)
        if expression_range == "auto":
            expression_range = (0.0, 1.0) if face_model.kind == "builtin" else None
        self.expression_range = expression_range
        #: expression keys the landmark solve leaves alone (gaze: set from the iris, :mod:`.gaze`)
        self.held = np.array([n.startswith("eyeLook") for n in face_model.exp_names], bool)
        def pts(basis):   # (N, 3, K) -> landmark points of every component (468, 3, K)
            return np.moveaxis(self.corr.points(np.moveaxis(np.asarray(basis, np.float64), -1, 0)), 0, -1)

        self._L0 = self.corr.points(np.asarray(face_model.mean_shape, np.float64)[None])[0]     # (468, 3)
        # closed lips touch: the two landmarks of an inner-lip pair share their rest point (their
        # surface points on the mean face are ~1 mm apart, which the solver otherwise closed by
        # rolling the lips in); the expressions still move each with its own lip
        a, b = GAP_PAIRS[:NUM_LIP_PAIRS, 0], GAP_PAIRS[:NUM_LIP_PAIRS, 1]
        self._L0[a] = self._L0[b] = 0.5 * (self._L0[a] + self._L0[b])
        self._Li = pts(face_model.id_basis)                                                   # (468, 3, Ki)
        self._Li[a] = self._Li[b] = 0.5 * (self._Li[a] + self._Li[b])     # no identity parts the lips
        self._Le = pts(face_model.exp_basis)                                                  # (468, 3, Ke)
        self._Le32, self._Li32 = self._Le.astype(np.float32), self._Li.astype(np.float32)
        # the same bases as (468*3, K) matrices: one matrix-vector product per evaluation
        self._Le2, self._Li2 = self._Le.reshape(-1, self._Le.shape[2]), self._Li.reshape(-1, self._Li.shape[2])
        self._w = self.corr.weights.astype(np.float64)                                        # (468,)
        # landmark normals of the mean face (model space); expression/identity barely turn them
        n = outward_sign(face_model) * vertex_normals(np.asarray(face_model.mean_shape, np.float64)[None],
                                                       face_model.faces)
        ln = self.corr.points(n)[0]
        self._normals = ln / np.maximum(np.linalg.norm(ln, axis=-1, keepdims=True), 1e-12)   # (468, 3)
        self.num_identity = self._Li.shape[2]
        self.num_expression = self._Le.shape[2]

    # ------------------------------------------------------------------ public
    def landmark_points(self, expression: np.ndarray, identity: np.ndarray | None = None) -> np.ndarray:
        """The tracker's landmark model: model-space points ``(468, 3)`` of ``expression (Ke,)``
        (and ``identity (Ki,)``), with the inner-lip pairs touching at rest (see ``__init__``)."""
        P = self._L0 + self._Le @ np.asarray(expression, np.float64)
        return P if identity is None else P + self._Li @ np.asarray(identity, np.float64)

    def initial_pose(self, landmarks: np.ndarray, K: np.ndarray, identity: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Rotation ``(3, 3)`` and translation ``(3,)`` from a weighted 3D similarity between the
        model's landmark points and MediaPipe's (x, y, z px) landmarks; depth = f / scale."""
        src = self._L0 + (self._Li @ identity if identity is not None else 0.0)
        lm = np.asarray(landmarks, np.float64)
        if lm.shape[1] < 3 or np.ptp(lm[:, 2]) < 1e-6:         # no depth: frontal start, 2D scale
            Rm = np.diag([1.0, -1.0, -1.0])
            s = float(np.sqrt(np.prod(np.ptp(lm[:, :2], 0)) / max(np.prod(np.ptp(src[:, :2], 0)), 1e-12)))
        else:
            fit = alignment.fit_similarity(src, lm[:, :3], self._w)
            Rm, s = fit.R, float(fit.scale)
        f = float(K[0, 0])
        z = f / max(s, 1e-9)
        mu_d = (self._w @ lm[:, :2]) / self._w.sum()
        centre = np.array([(mu_d[0] - K[0, 2]) * z / f, (mu_d[1] - K[1, 2]) * z / f, z])
        return Rm, centre - Rm @ ((self._w @ src) / self._w.sum())

    def track(self, landmarks: np.ndarray, K: np.ndarray, identity: np.ndarray, previous: FaceTrack | None = None,
              face_size: float | None = None, fit_identity: bool = False,
              held_values: np.ndarray | None = None) -> FaceTrack:
        """Fit pose + expression (+ identity if ``fit_identity``) to one frame's landmarks.

        landmarks ``(468, 2|3)`` px (finite; the caller checks); ``K (3, 3)``; identity ``(Ki,)``
        (start value when ``fit_identity``); previous: last frame's track (warm start and
        temporal prior) or None; face_size px (default: sqrt of the landmark box area);
        held_values ``(Ke,)``: the values of the :attr:`held` keys (gaze), not solved (default 0).

        With ``fit_identity`` the frame is solved twice: pose, expression and identity from the
        landmarks alone (no opening term), then pose and expression with every term at that
        identity (:attr:`FaceTrackerConfig.iterations` steps from the first solve).  The openings
        (:data:`GAP_PAIRS`: quadratic, weighted far above single landmarks) are the expression's:
        left to shape the identity, the lid pairs traded the eyes' width for their height (every
        learnt face had eyes 10-15 % narrower than MediaPipe's, held open: a stare) and the lip
        pairs shrank the face and moved lip partings from ``jawOpen`` to the lips' shape
        (docs/face.md, "Identity from the landmarks alone").
        """
        c = self.config
        lm = np.asarray(landmarks, np.float64)
        if lm.shape[0] != NUM_MP_LANDMARKS:
            raise ValueError(f"landmarks must be ({NUM_MP_LANDMARKS}, 2|3), got {lm.shape}")
        target = lm[:, :2]
        if face_size is None:
            face_size = float(np.sqrt(np.prod(np.maximum(np.ptp(target, 0), 1.0))))
        identity = np.asarray(identity, np.float64).copy()
        if previous is None:
            Rm, t = self.initial_pose(lm, K, identity)
            e = np.zeros(self.num_expression)
            e_prev, iters = None, c.init_iterations
            rtol = 1e-2 * c.energy_rtol          # a cold start crawls along the lips' valley: do not stop early
        else:
            Rm, t = previous.rotation.astype(np.float64), previous.translation.astype(np.float64)
            e = previous.expression.astype(np.float64).copy()
            e_prev, iters = e.copy(), c.iterations
            rtol = c.energy_rtol
        e[self.held] = 0.0 if held_values is None else np.asarray(held_values, np.float64)[self.held]
        inv_s2 = 1.0 / (c.landmark_sigma * face_size) ** 2
        done0 = 0
        if fit_identity:
            Rm, t, e, identity, done0 = self._solve(_Problem(self, target, K, inv_s2, e_prev, True, openings=False),
                                                    Rm, t, e, identity, iters, rtol)
            iters, rtol = c.iterations, c.energy_rtol
        ctx = _Problem(self, target, K, inv_s2, e_prev, False)
        Rm, t, e, identity, done = self._solve(ctx, Rm, t, e, identity, iters, rtol)
        return FaceTrack(rotation=Rm.astype(np.float32), translation=t.astype(np.float32),
                         expression=e.astype(np.float32), identity=identity.astype(np.float32),
                         landmark_error_px=ctx.last_error, iterations=done0 + done)

    def _solve(self, ctx: "_Problem", Rm, t, e, identity, iters: int, rtol: float):
        """Levenberg-Marquardt on ``ctx`` from the given parameters -> ``(Rm, t, e, identity, steps)``."""
        c = self.config
        energy, lin = ctx.linearise(Rm, t, e, identity)
        lam = c.damping
        done = 0
        for done in range(1, iters + 1):
            H, g = lin
            free = ctx.free_mask(e, g)
            Hf = H[np.ix_(free, free)]
            Hf = Hf + lam * np.diag(np.diag(Hf)) + 1e-9 * np.eye(len(Hf))
            delta = np.zeros_like(g)
            delta[free] = -np.linalg.solve(Hf, g[free])
            Rn, tn, en, idn = ctx.apply(delta, Rm, t, e, identity)
            energy_n, _ = ctx.linearise(Rn, tn, en, idn, jacobian=False)
            if energy_n <= energy:
                converged = np.abs(delta).max() < c.step_tol or energy - energy_n < rtol * energy
                Rm, t, e, identity, energy = Rn, tn, en, idn, energy_n
                lam = max(lam * 0.3, 1e-7)
                if converged or done == iters:
                    break
                _, lin = ctx.linearise(Rm, t, e, identity)
            else:
                lam *= 10.0
        return Rm, t, e, identity, done


class _Problem:
    """One frame's linearisation: energy, Gauss-Newton ``H``, gradient ``g`` for the unknowns
    ``[w (3), t (3), e (Ke), i (Ki if fit_identity)]``."""

    def __init__(self, tr: FaceTracker, target, K, inv_scale2: float, e_prev, fit_identity: bool,
                 openings: bool = True):
        self.tr, self.target, self.inv_s2, self.e_prev, self.fit_identity = tr, target, inv_scale2, e_prev, fit_identity
        self.f = np.array([K[0, 0], K[1, 1]], np.float64)
        self.c = np.array([K[0, 2], K[1, 2]], np.float64)
        self.Ke, self.Ki = tr.num_expression, tr.num_identity
        self._dist2: np.ndarray | None = None     # squared px distances of the last evaluation
        cfg = tr.config
        self._wg = np.where(np.arange(len(GAP_PAIRS)) < NUM_LIP_PAIRS, cfg.w_gap_lips, cfg.w_gap_lids) \
            * (inv_scale2 / len(GAP_PAIRS) if openings else 0.0)          # (P,) weights of the openings
        self._base: tuple[np.ndarray, np.ndarray] | None = None    # (identity, L0 + Li identity) of the last call

    @property
    def last_error(self) -> float:
        """Mean px distance of the model's landmark points to the target at the last evaluation."""
        return float("nan") if self._dist2 is None else float(np.sqrt(self._dist2).mean())

    def free_mask(self, e: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Unknowns to solve for: all but the expression coefficients held at a bound whose
        gradient pushes them further out (projected Newton)."""
        free = np.ones(g.shape[0], bool)
        free[6:6 + self.Ke] = ~self.tr.held
        rng = self.tr.expression_range
        if rng is not None:
            ge = g[6:6 + self.Ke]
            free[6:6 + self.Ke] &= ~(((e <= rng[0]) & (ge > 0)) | ((e >= rng[1]) & (ge < 0)))
        return free

    def apply(self, delta, Rm, t, e, identity):
        Rn = _rodrigues(delta[:3]) @ Rm
        en = e + delta[6:6 + self.Ke]
        if self.tr.expression_range is not None:
            en = np.clip(en, *self.tr.expression_range)
        idn = identity + delta[6 + self.Ke:] if self.fit_identity else identity
        return Rn, t + delta[3:6], en, idn

    def linearise(self, Rm, t, e, identity, jacobian: bool = True):
        """-> energy, (H, g) at the given parameters (IRLS weights of the Charbonnier term);
        ``jacobian=False``: the energy only (a step's acceptance test), ``(None, None)``."""
        tr, cfg = self.tr, self.tr.config
        if self._base is None or not np.array_equal(self._base[0], identity):   # fixed unless fit_identity
            self._base = (identity.copy(), tr._L0 + (tr._Li2 @ identity).reshape(-1, 3))
        P = self._base[1] + (tr._Le2 @ e).reshape(-1, 3)                  # (468, 3) model space
        RP = P @ Rm.T
        X = RP + t                                                         # (468, 3) camera
        z = np.maximum(X[:, 2], 1e-6)
        u = X[:, :2] / z[:, None] * self.f + self.c                       # (468, 2)
        d = u - self.target
        dist2 = (d ** 2).sum(1)
        self._dist2 = dist2
        # visibility weight from the landmark normals (held fixed within the step)
        n = tr._normals @ Rm.T
        cosv = -np.einsum("ij,ij->i", n, X) / np.maximum(np.sqrt(np.einsum("ij,ij->i", X, X)), 1e-12)
        w = tr._w * (0.3 + 0.7 * np.clip(cosv, 0.0, 1.0))
        W = w.sum()
        r2 = dist2 * self.inv_s2
        root = np.sqrt(1.0 + r2)
        e_sq = e @ e
        energy = float((w * (root - 1.0)).sum() / W + cfg.w_expression * e_sq)
        if tr.expression_range is not None:
            energy += cfg.w_expression_l1 * float(e.sum())
        if self.e_prev is not None:
            energy += cfg.w_temporal * float(((e - self.e_prev) ** 2).sum())
        if self.fit_identity:
            energy += cfg.w_identity * float(identity @ identity)
        a, b = GAP_PAIRS[:, 0], GAP_PAIRS[:, 1]
        dg = (u[a] - u[b]) - (self.target[a] - self.target[b])            # (P, 2) opening residuals
        wg = self._wg
        energy += float((wg[:, None] * dg ** 2).sum())
        if not jacobian:
            return energy, (None, None)
        # Jacobian of u: A = du/dX (468, 2, 3); J (468, 2, n) in float32 (the normal equations'
        # products dominate the cost; float32 halves it, the solve is float64)
        A = np.zeros((len(X), 2, 3))
        A[:, 0, 0] = self.f[0] / z
        A[:, 1, 1] = self.f[1] / z
        A[:, :, 2] = -(u - self.c) / z[:, None]
        AR = (A @ Rm).astype(np.float32)                                   # (468, 2, 3)
        ke = self.Ke
        J = np.empty((len(X), 2, 6 + ke + (self.Ki if self.fit_identity else 0)), np.float32)
        # rotation increment: a^T (-[p]x) = (p x a)^T, the cross product written out (np.cross: 3x slower)
        p0, p1, p2 = RP[:, None, 0], RP[:, None, 1], RP[:, None, 2]       # (468, 1)
        a0, a1, a2 = A[:, :, 0], A[:, :, 1], A[:, :, 2]                    # (468, 2)
        J[:, :, 0] = p1 * a2 - p2 * a1
        J[:, :, 1] = p2 * a0 - p0 * a2
        J[:, :, 2] = p0 * a1 - p1 * a0
        J[:, :, 3:6] = A                                                   # translation
        for basis, cols in ((tr._Le32, slice(6, 6 + ke)),) + (((tr._Li32, slice(6 + ke, None)),)
                                                              if self.fit_identity else ()):
            J[:, :, cols] = AR @ basis                                     # (A R) B per landmark: (468, 2, 3) x (468, 3, K)
        Jg = (J[a] - J[b]).reshape(2 * len(a), -1).astype(np.float64)     # (2P, n) openings
        J = J.reshape(2 * len(X), -1)                                      # (936, n)
        # IRLS: rho(r) ~ rho(r0) + (r^2 - r0^2) / (2 sqrt(1 + r0^2)) per point
        wi = np.repeat(w / root * self.inv_s2 / (2.0 * W), 2)             # (936,)
        Js = J * np.sqrt(2.0 * wi).astype(np.float32)[:, None]
        H = (Js.T @ Js).astype(np.float64)
        g = 2.0 * (J.T.astype(np.float64) @ (wi * d.reshape(-1)))
        wg2 = np.repeat(wg, 2)                                             # (2P,)
        H += 2.0 * (Jg.T * wg2) @ Jg
        g += 2.0 * Jg.T @ (wg2 * dg.reshape(-1))
        se = slice(6, 6 + self.Ke)
        H[se, se] += 2.0 * cfg.w_expression * np.eye(self.Ke)
        g[se] += 2.0 * cfg.w_expression * e
        if tr.expression_range is not None:
            g[se] += cfg.w_expression_l1
        if self.e_prev is not None:
            H[se, se] += 2.0 * cfg.w_temporal * np.eye(self.Ke)
            g[se] += 2.0 * cfg.w_temporal * (e - self.e_prev)
        if self.fit_identity:
            si = slice(6 + self.Ke, None)
            H[si, si] += 2.0 * cfg.w_identity * np.eye(self.Ki)
            g[si] += 2.0 * cfg.w_identity * identity
        return energy, (H, g)

