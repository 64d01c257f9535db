"""Face-to-body bridge (paper Sec. 3.1, Fig. 3), done automatically.

The paper annotates the face boundary on SMPL-H and on the 3DMM by hand, sets
a similarity transform by hand and bridges the gap in Blender.  Here every step
is a pure function on numpy arrays, run once when a
:class:`~model_runtime.models.full_model.FullBodyModel` is built.  numpy only (no
scipy), so the merged model also builds inside Blender's Python:

1. :func:`face_region_on_body` - which body vertices are "face": the asset's
   ``extras["head_region"]`` mask if present, else an automatic rule (head
   skinning weight dominant, in front of the head joint, facing forward, below
   the top of the head).
2. :func:`region_to_disk` - the region as a set of triangles that is one
   topological disk (largest component, enclosed islands filled, pinched
   boundary vertices removed), so its boundary is a single loop.
3. :func:`align_loops` - similarity transform (:func:`model_runtime.geometry.alignment.fit_similarity`) taking the 3DMM's outer
   boundary loop onto the region's boundary loop, after resampling both by arc
   length and searching the cyclic offset.
4. The body is cut one ring *wider* than the region (:func:`dilate_faces`), so
   the aligned face boundary sits inside the hole with a gap of about one edge.
5. :func:`bridge_loops` - the two loops are joined by a strip of triangles
   chosen by dynamic programming (shortest diagonals, Fuchs-Kedem-Uselton
   style), oriented consistently with both meshes.  Loops may have any lengths.
   Before, the hole loop is smoothed (:func:`smooth_loop`; a cut along mesh
   edges zig-zags) and the offset spread over the rings around it (:func:`seam_spread`).
6. The strip is found once, for the mean face; identity and expression then
   move the face rim (the jaw by centimetres), so the body around the hole
   follows the rim's displacement (:func:`strip_links`, :func:`seam_spread`),
   fading out over a few rings, and the strip keeps its rest shape instead of folding.

Conventions: meshes are ``faces (F, 3)`` int vertex ids, counter-clockwise
seen from outside (normals point out).  A *loop* is an ``(L,)`` array of vertex
ids in the order of the boundary half-edges of its mesh, i.e. the surface lies
on the left of the walking direction seen from outside.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ModelFileError
from ..core.skeleton import HEAD_JOINT
from ..geometry import alignment

if TYPE_CHECKING:
    from .body_model import BodyModel

__all__ = [
    "boundary_half_edges", "boundary_loops", "loop_length", "triangle_normals",
    "vertex_normals_np", "face_region_on_body", "region_to_disk", "dilate_faces", "resample_loop",
    "align_loops", "bridge_loops", "outer_loop", "ring_distance", "seam_skin_weights",
    "folded_triangles", "connected_components", "seam_spread", "strip_links", "smooth_loop", "strip_quality",
]


# ------------------------------------------------------------------ mesh topology
def _edge_keys(u: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    return u.astype(np.int64) * n + v.astype(np.int64)


def boundary_half_edges(faces: np.ndarray) -> np.ndarray:
    """Directed half-edges ``(E, 2)`` whose opposite half-edge is in no triangle (open boundary)."""
    faces = np.asarray(faces, np.int64)
    if faces.size == 0:
        return np.zeros((0, 2), np.int64)
    he = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    n = int(faces.max()) + 1
    fwd = _edge_keys(he[:, 0], he[:, 1], n)
    rev = _edge_keys(he[:, 1], he[:, 0], n)
    return he[~np.isin(rev, fwd)]


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered boundary loops of a mesh, each ``(L,)`` vertex ids, surface on the left.

    Raises ``ValueError`` if a boundary vertex is pinched (two outgoing boundary
    half-edges), since the loop through it is then ambiguous.
    """
    he = boundary_half_edges(faces)
    if len(he) == 0:
        return []
    starts, counts = np.unique(he[:, 0], return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"pinched boundary at vertices {starts[counts > 1][:10].tolist()}")
    nxt = dict(zip(he[:, 0].tolist(), he[:, 1].tolist()))
    loops, seen = [], set()
    for s in he[:, 0].tolist():  # build-time only: walks each boundary vertex once
        if s in seen:
            continue
        loop, v = [], s
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt.get(v, s)
        loops.append(np.asarray(loop, np.int64))
    return loops


def loop_length(pts: np.ndarray) -> float:
    """Perimeter of a closed polyline ``(L, 3)``."""
    return float(np.linalg.norm(np.roll(pts, -1, 0) - pts, axis=1).sum())


def outer_loop(faces: np.ndarray, verts: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The longest boundary loop (the outer rim of a face mask) and the others (eyes, mouth)."""
    loops = boundary_loops(faces)
    if not loops:
        raise ValueError("mesh has no open boundary")
    lengths = [loop_length(verts[lp]) for lp in loops]
    k = int(np.argmax(lengths))
    return loops[k], [lp for i, lp in enumerate(loops) if i != k]


def triangle_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised triangle normals ``(..., F, 3)`` (length = 2 x area) for verts ``(..., V, 3)``."""
    v0, v1, v2 = verts[..., faces[:, 0], :], verts[..., faces[:, 1], :], verts[..., faces[:, 2], :]
    return np.cross(v1 - v0, v2 - v0)


def vertex_normals_np(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` for verts ``(V, 3)``."""
    fn = triangle_normals(verts, faces)
    n = np.zeros_like(verts, dtype=np.float64)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _face_pairs(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles sharing an (undirected) edge: ids ``a (P,)``, ``b (P,)``, one pair per shared edge.

    An edge shared by three or more triangles (non-manifold) links consecutive
    ones in sorted order, which keeps them in one component.
    """
    F = len(faces)
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    key = _edge_keys(e[:, 0], e[:, 1], int(faces.max()) + 1)
    fid = np.repeat(np.arange(F), 3)
    order = np.argsort(key, kind="stable")
    k, f = key[order], fid[order]
    same = k[1:] == k[:-1]
    return f[:-1][same], f[1:][same]


def _neighbours_in(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per triangle, how many of its edge-neighbours (pairs ``a``-``b``) lie in ``mask (F,)``: ``(F,)`` int."""
    n = len(mask)
    m = mask.astype(np.int64)
    return np.bincount(a, weights=m[b], minlength=n).astype(np.int64) + \
        np.bincount(b, weights=m[a], minlength=n).astype(np.int64)


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """Components of the undirected graph on ``n`` nodes with edges ``a (E,)``-``b (E,)``.

    Returns ``(count, labels (n,))``, labels ``0..count-1`` numbered by each
    component's smallest node (the numbering of ``scipy.sparse.csgraph``).
    Vectorised union-find: every round hooks, for each edge joining two
    trees, the larger root under the smaller one (``np.minimum.at``), then
    compresses all paths by pointer jumping; it stops when no edge joins two
    trees (a few rounds on a mesh).  numpy only, so it runs in Blender.
    """
    parent = np.arange(n)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        split = ra != rb
        if not split.any():
            break
        lo, hi = np.minimum(ra[split], rb[split]), np.maximum(ra[split], rb[split])
        np.minimum.at(parent, hi, lo)              # parent[x] <= x always: no cycles
        while True:                                # full path compression
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    roots, labels = np.unique(parent, return_inverse=True)
    return len(roots), labels.reshape(-1)


def _subgraph(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """The pairs with both ends in ``mask``, renumbered to ``0..mask.sum()-1``."""
    ids = np.cumsum(mask) - 1
    both = mask[a] & mask[b]
    return int(mask.sum()), ids[a[both]], ids[b[both]]


# ------------------------------------------------------------------ the face region
def face_region_on_body(body: "BodyModel") -> np.ndarray:
    """Bool mask ``(V,)`` of body vertices the 3DMM face replaces.

    ``body.extras["head_region"]`` when the asset provides it; otherwise the
    automatic rule on the rest mesh (no annotation needed, e.g. for SMPL-H):
    head skinning weight >= 0.5, in front of the head joint by more than a
    quarter of the head's depth, vertex normal within ~60 degrees of +Z, and
    below 80 % of the head's height (the scalp stays body).
    """
    V = body.num_vertices
    if "head_region" in body.extras:
        mask = np.asarray(body.extras["head_region"]).astype(bool).reshape(-1)
        if mask.shape != (V,):
            raise ModelFileError(body.source, "extra_head_region", f"has {mask.size} entries for {V} vertices")
        return mask
    verts = body.v_template.astype(np.float64)
    head = body.weights[:, HEAD_JOINT] >= 0.5
    if head.sum() < 10:
        raise ModelFileError(body.source, "weights", "too few vertices are skinned to the head to find the face")
    j_head = body.rest_joints()[HEAD_JOINT].astype(np.float64)
    normals = vertex_normals_np(verts, body.faces.astype(np.int64))
    hv = verts[head]
    z_front = hv[:, 2].max()
    y_lo, y_hi = hv[:, 1].min(), hv[:, 1].max()
    return (head & (verts[:, 2] > j_head[2] + 0.25 * (z_front - j_head[2])) & (normals[:, 2] > 0.5)
            & (verts[:, 1] < y_lo + 0.8 * (y_hi - y_lo)))


def region_to_disk(faces: np.ndarray, face_mask: np.ndarray, max_iter: int = 20) -> np.ndarray:
    """Grow/trim a triangle mask ``(F,)`` into one disk whose boundary is one simple loop.

    Keeps the largest edge-connected component, adds enclosed islands of the
    complement (holes in the region), removes spikes (region triangles with two
    boundary edges), adds notches (outside triangles with two edges on the
    region) and the triangles around pinched boundary vertices, until stable.
    """
    faces = np.asarray(faces, np.int64)
    pa, pb = _face_pairs(faces)
    mask = np.asarray(face_mask, bool).copy()
    for _ in range(max_iter):
        if not mask.any():
            raise ValueError("empty face region")
        # 1. largest connected component of the region
        n, lab = connected_components(*_subgraph(pa, pb, mask))
        sizes = np.bincount(lab, minlength=n)
        keep = np.zeros_like(mask)
        keep[np.nonzero(mask)[0][lab == np.argmax(sizes)]] = True
        mask = keep
        # 2. fill enclosed islands: complement components touching the region, except the largest
        comp = ~mask
        n, lab = connected_components(*_subgraph(pa, pb, comp))
        touching = np.unique(lab[_neighbours_in(pa, pb, mask)[comp] > 0])
        if len(touching) > 1:
            sizes = np.bincount(lab, minlength=n)
            main = touching[np.argmax(sizes[touching])]
            islands = np.isin(lab, touching[touching != main])
            mask[np.nonzero(comp)[0][islands]] = True
        # 3. spikes (region triangles with >= 2 boundary edges) out, notches (outside ones with >= 2 edges
        #    on the region) in: a smooth rim, so the strip's fans do not fold on a zig-zag loop
        n_in = _neighbours_in(pa, pb, mask)
        spike = mask & (n_in <= 1) & (mask.sum() > 1)
        mask &= ~spike
        n_in = _neighbours_in(pa, pb, mask)
        notch = (~mask) & (n_in >= 2)
        # 4. pinched vertices on the region boundary
        he = boundary_half_edges(faces[mask])
        starts, counts = np.unique(he[:, 0], return_counts=True)
        pinched = starts[counts > 1]
        pinch_faces = np.isin(faces, pinched).any(1) & ~mask
        if not notch.any() and not pinch_faces.any() and not spike.any():
            return mask
        mask |= notch | pinch_faces
    raise ValueError("face region did not settle into a disk")


def dilate_faces(faces: np.ndarray, face_mask: np.ndarray, rings: int = 1) -> np.ndarray:
    """Add every triangle sharing a vertex with the mask, ``rings`` times: ``(F,)`` bool."""
    faces = np.asarray(faces, np.int64)
    mask = np.asarray(face_mask, bool).copy()
    vmask = np.zeros(int(faces.max()) + 1, bool)
    for _ in range(rings):
        vmask[faces[mask].reshape(-1)] = True
        mask |= vmask[faces].any(1)
    return mask


def ring_distance(faces: np.ndarray, n_vertices: int, seeds: np.ndarray, max_rings: int) -> np.ndarray:
    """Edge-hop distance ``(V,)`` from the ``seeds`` vertices, capped at ``max_rings + 1``."""
    faces = np.asarray(faces, np.int64)
    u, v = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).T          # directed edges, both ways below
    dist = np.full(n_vertices, max_rings + 1, np.int64)
    front = np.zeros(n_vertices, bool)
    front[seeds] = True
    dist[front] = 0
    for r in range(1, max_rings + 1):
        reached = np.zeros(n_vertices, bool)
        reached[v[front[u]]] = True
        reached[u[front[v]]] = True
        front = reached & (dist > r)
        dist[front] = r
    return dist


def seam_skin_weights(weights: np.ndarray, faces: np.ndarray, rim: np.ndarray, head_joint: int,
                      rings: int = 5) -> np.ndarray:
    """Body skin weights ``(V, J)`` ramped to the head joint near the hole rim.

    The face moves rigidly with the head, so the rim it is stitched to must too,
    or the strip shears and flips when the head turns.  Vertices ``r`` rings from
    the rim (``rim`` ids) get ``w' = (1 - a) w + a * onehot(head)`` with
    ``a = 1 - r / rings`` (1 on the rim, 0 from ``rings`` rings away on).
    """
    dist = ring_distance(faces, len(weights), rim, rings)
    a = np.clip(1.0 - dist / rings, 0.0, 1.0)[:, None]
    onehot = np.zeros(weights.shape[1], weights.dtype)
    onehot[head_joint] = 1
    return ((1 - a) * weights + a * onehot).astype(weights.dtype)


def folded_triangles(verts: np.ndarray, faces: np.ndarray, which: np.ndarray, min_cos: float = 0.0) -> np.ndarray:
    """Of the triangles ``faces[which]``, those whose normal turns by more than
    ``arccos(min_cos)`` from a neighbour across one of their edges: ``(len(which),)`` bool."""
    faces = np.asarray(faces, np.int64)
    n = triangle_normals(verts, faces)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    he = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    V = int(faces.max()) + 1
    key = _edge_keys(he[:, 0], he[:, 1], V)
    order = np.argsort(key)
    sel = he.reshape(-1, 3, 2)[which].reshape(-1, 2)                     # (3W, 2) directed edges
    pos = np.searchsorted(key[order], _edge_keys(sel[:, 1], sel[:, 0], V))
    pos = np.minimum(pos, len(order) - 1)
    found = key[order][pos] == _edge_keys(sel[:, 1], sel[:, 0], V)
    nb = order[pos] // 3
    cos = np.where(found, (np.repeat(n[which], 3, axis=0) * n[nb]).sum(1), 1.0)
    return (cos < min_cos).reshape(-1, 3).any(1)


def strip_quality(verts: np.ndarray, faces: np.ndarray, which: np.ndarray) -> dict[str, float]:
    """Shape of the triangles ``faces[which]`` on ``verts (V, 3)``: ``folded`` how many turn by more
    than 90 degrees from a neighbour (:func:`folded_triangles`), ``min_angle`` smallest corner angle
    (degrees), ``max_aspect`` largest ``longest edge / its altitude``."""
    P = np.asarray(verts, np.float64)[np.asarray(faces, np.int64)[which]]          # (W, 3, 3)
    e = np.roll(P, -1, axis=1) - P                                                 # (W, 3, 3) edge k: k -> k+1
    ln = np.linalg.norm(e, axis=-1)                                                # (W, 3)
    area2 = np.linalg.norm(np.cross(e[:, 0], -e[:, 2]), axis=-1)                   # (W,) 2 x area
    cos = -(e * np.roll(e, 1, axis=1)).sum(-1) / np.maximum(ln * np.roll(ln, 1, axis=1), 1e-30)
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))                           # (W, 3) at corner k
    return {"folded": int(folded_triangles(verts, faces, which).sum()), "min_angle": float(ang.min()),
            "max_aspect": float((ln.max(1) ** 2 / np.maximum(area2, 1e-30)).max())}


def seam_spread(verts: np.ndarray, faces: np.ndarray, hole: np.ndarray, rings: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """How a per-hole-vertex quantity spreads onto the body around the hole.

    ``verts (V, 3)``, ``faces (F, 3)`` the kept body triangles, ``hole (La,)`` the hole loop.
    Returns ``ids (n,)`` the vertices fewer than ``rings`` edge rings from the hole (hole first)
    and ``S (n, La)``: a hole vertex keeps its own value; a vertex ``r`` rings away takes a
    Gaussian mix (sigma = the hole's mean edge length) of the hole vertices' values, times
    ``smoothstep(1 - r / rings)``, so the quantity fades to 0 at ``rings``.
    """
    verts = np.asarray(verts, np.float64)
    hole = np.asarray(hole, np.int64)
    dist = ring_distance(faces, len(verts), hole, rings)                           # (V,)
    ids = np.flatnonzero(dist < rings)
    ids = ids[np.argsort(dist[ids], kind="stable")]
    t = 1.0 - dist[ids] / rings
    fade = t * t * (3.0 - 2.0 * t)                                                  # (n,) 1 on the hole
    sigma = np.linalg.norm(np.roll(verts[hole], -1, 0) - verts[hole], axis=1).mean()
    d2 = ((verts[ids][:, None] - verts[hole][None]) ** 2).sum(-1)                   # (n, La)
    G = np.exp(-(d2 - d2.min(1, keepdims=True)) / (2.0 * sigma ** 2))
    G /= G.sum(1, keepdims=True)
    pos = np.full(len(verts), -1, np.int64)
    pos[hole] = np.arange(len(hole))
    on = dist[ids] == 0
    G[on] = 0.0
    G[on, pos[ids[on]]] = 1.0
    return ids, fade[:, None] * G


def strip_links(hole: np.ndarray, rim: np.ndarray, strip: np.ndarray) -> np.ndarray:
    """``H (La, Lb)``: row ``i`` averages the rim vertices hole vertex ``hole[i]`` shares a strip
    edge with (``strip (Fs, 3)`` in the same ids as ``hole (La,)`` / ``rim (Lb,)``)."""
    hole, rim = np.asarray(hole, np.int64), np.asarray(rim, np.int64)
    n = int(max(hole.max(), rim.max(), np.max(strip))) + 1
    pos_a, pos_b = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    pos_a[hole], pos_b[rim] = np.arange(len(hole)), np.arange(len(rim))
    e = np.asarray(strip, np.int64)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    e = np.concatenate([e, e[:, ::-1]])
    link = (pos_a[e[:, 0]] >= 0) & (pos_b[e[:, 1]] >= 0)
    H = np.zeros((len(hole), len(rim)))
    H[pos_a[e[link, 0]], pos_b[e[link, 1]]] = 1.0
    return H / np.maximum(H.sum(1, keepdims=True), 1.0)


def smooth_loop(pts: np.ndarray, iters: int = 10, lam: float = 0.5, mu: float = -0.53) -> np.ndarray:
    """Taubin smoothing of the closed polyline ``pts (L, 3)`` -> ``(L, 3)``: alternating steps
    ``lam`` and ``mu`` towards the mean of the two neighbours.  Removes the zig-zag of a hole cut
    along mesh edges (alternate vertices 1 and 9 mm from the face rim) without shrinking the loop."""
    p = np.asarray(pts, np.float64).copy()
    for _ in range(iters):
        for f in (lam, mu):
            p = p + f * (0.5 * (np.roll(p, 1, 0) + np.roll(p, -1, 0)) - p)
    return p


# ------------------------------------------------------------------ alignment
def resample_loop(pts: np.ndarray, m: int) -> np.ndarray:
    """``m`` points equally spaced by arc length along the closed polyline ``(L, 3)``, from ``pts[0]``."""
    closed = np.concatenate([pts, pts[:1]], 0)
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    q = np.linspace(0.0, s[-1], m, endpoint=False)
    return np.stack([np.interp(q, s, closed[:, c]) for c in range(3)], axis=1)


def align_loops(src_pts: np.ndarray, dst_pts: np.ndarray, m: int = 128) -> tuple[alignment.Similarity, float]:
    """Similarity mapping loop ``src (Ls, 3)`` onto loop ``dst (Ld, 3)`` (same walking direction).

    Both are resampled to ``m`` points; all ``m`` cyclic offsets are fitted at
    once (batched Umeyama) and the best one that keeps the face upright and
    looking forward (``R[1, 1] > 0`` and ``R[2, 2] > 0``: both frames are Y up,
    +Z forward; an oval rim alone would also fit upside down) wins.  Returns the transform and its rms residual (dst units).
    """
    a = resample_loop(np.asarray(src_pts, np.float64), m)
    b = resample_loop(np.asarray(dst_pts, np.float64), m)
    idx = (np.arange(m)[:, None] + np.arange(m)[None, :]) % m       # (offset, i)
    sims = alignment.fit_similarity(a, b[idx])                      # one per offset
    R, scale = sims.R, sims.scale
    rms = np.sqrt(((sims.apply(a) - b[idx]) ** 2).sum(-1).mean(-1))
    rms = np.where((R[:, 1, 1] > 0) & (R[:, 2, 2] > 0) & (scale > 0), rms, np.inf)
    k = int(np.argmin(rms))
    if not np.isfinite(rms[k]):
        raise ValueError("no upright, forward-facing alignment of the face boundary to the body hole")
    return alignment.Similarity(R[k], sims.t[k], float(scale[k])), float(rms[k])


# ------------------------------------------------------------------ stitching
def bridge_loops(loop_a: np.ndarray, pts_a: np.ndarray, loop_b: np.ndarray, pts_b: np.ndarray,
                 normals_a: np.ndarray | None = None, normals_b: np.ndarray | None = None) -> np.ndarray:
    """Triangles ``(La + Lb, 3)`` joining two closed loops that walk the same way.

    ``loop_a`` ``(La,)`` ids of the *outer* loop (the hole: the strip lies on its
    left, like the cut-away surface did) with positions ``pts_a (La, 3)``;
    ``loop_b`` ``(Lb,)`` ids of the *inner* loop (the face rim: the face lies on
    its left, the strip on its right) with ``pts_b (Lb, 3)``.  Each triangle
    uses one loop edge and adds one diagonal.  The sequence is found by dynamic
    programming over the ``(La+1, Lb+1)`` grid (rows vectorised with a running
    minimum), minimising the summed diagonal lengths, each weighted up by how
    far the triangle's normal turns from the surface normals ``normals_a (La, 3)``
    / ``normals_b (Lb, 3)`` at its corners (if given); a triangle facing away
    from them costs as much as the whole seam, so folds are taken only if
    unavoidable.  Loop edges are used in the orientation their meshes need, so
    the result is consistently oriented.
    """
    La, Lb = len(loop_a), len(loop_b)
    pa, pb = np.asarray(pts_a, np.float64), np.asarray(pts_b, np.float64)
    j0 = int(np.argmin(np.linalg.norm(pb - pa[0], axis=1)))        # start at the closest pair
    ib = (np.arange(Lb + 1) + j0) % Lb
    ia = np.arange(La + 1) % La
    A, Bp = pa[ia][:, None, :], pb[ib][None, :, :]                  # (La+1, 1, 3), (1, Lb+1, 3)
    diag = np.linalg.norm(A - Bp, axis=-1)                          # (La+1, Lb+1): |a_i - b_j|
    # cu[i, j]: triangle (a_{i-1}, a_i, b_j) entering (i, j) from (i-1, j); cl[i, j]: (b_j, b_{j-1}, a_i)
    A_prev, B_prev = np.roll(A, 1, axis=0), np.roll(Bp, 1, axis=1)
    cu = diag * _fold_factor(np.cross(A - A_prev, Bp - A_prev), normals_a, normals_b, ia, ib, "a")
    cl = diag * _fold_factor(np.cross(B_prev - Bp, A - Bp), normals_a, normals_b, ia, ib, "b")
    big = loop_length(pa) + loop_length(pb)
    cu, cl = np.where(np.isfinite(cu), cu, big), np.where(np.isfinite(cl), cl, big)
    cl[:, 0] = 0.0
    cost = np.empty_like(diag)
    cost[0] = np.concatenate([[0.0], np.cumsum(cl[0, 1:])])
    for i in range(1, La + 1):  # cost[i, j] = min(cost[i-1, j] + cu[i, j], cost[i, j-1] + cl[i, j])
        L = np.cumsum(cl[i])
        cost[i] = L + np.minimum.accumulate(cost[i - 1] + cu[i] - L)
    tris = []
    i, j = La, Lb
    while i > 0 or j > 0:  # build-time backtrack, La + Lb steps
        if j == 0 or (i > 0 and cost[i - 1, j] + cu[i, j] <= cost[i, j - 1] + cl[i, j]):
            tris.append((loop_a[ia[i - 1]], loop_a[ia[i]], loop_b[ib[j]]))    # advance on the hole
            i -= 1
        else:
            tris.append((loop_b[ib[j]], loop_b[ib[j - 1]], loop_a[ia[i]]))    # advance on the face rim
            j -= 1
    return np.asarray(tris[::-1], np.int64)


def _fold_factor(tri_n: np.ndarray, normals_a, normals_b, ia: np.ndarray, ib: np.ndarray, moving: str) -> np.ndarray:
    """Cost multiplier ``(La+1, Lb+1)``: 1 + 2 (1 - cos) against the corners' mean normal, inf if facing away
    or degenerate.  ``moving`` says which loop contributes two corners (``"a"``: a_{i-1}, a_i, b_j)."""
    n = np.linalg.norm(tri_n, axis=-1)
    if normals_a is None or normals_b is None:
        return np.where(n > 0, 1.0, np.inf)
    na, nb = np.asarray(normals_a, np.float64)[ia][:, None], np.asarray(normals_b, np.float64)[ib][None]
    if moving == "a":
        ref = na + np.roll(na, 1, axis=0) + nb
    else:
        ref = nb + np.roll(nb, 1, axis=1) + na
    cos = (tri_n * ref).sum(-1) / np.maximum(n * np.linalg.norm(ref, axis=-1), 1e-30)
    return np.where((n > 0) & (cos > 0), 1.0 + 2.0 * (1.0 - cos), np.inf)
