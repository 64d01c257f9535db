"""The merged full-body model: SMPL-H-structured body with its face replaced by a 3DMM (paper Sec. 3.1).

Merged mesh (``Vm = Vb' + N`` vertices)::

    vertices [0, Vb')      body vertices outside the cut (``body_vertex_ids`` into the body)
    vertices [Vb', Vm)     the N 3DMM face vertices, in the face model's order
    merged_faces           kept body triangles + face triangles + bridge strip

The bridge strip has no vertices of its own.  Body vertices are skinned by LBS
(:mod:`lbs`); the face is Eq. 3 geometry (:func:`face_model.face_geometry`)
mapped into the body's rest frame by :attr:`FullBodyModel.face_to_body` (found
once by :mod:`bridge`), fitted to the body's shape (a similarity that follows
the hole rim as beta changes), and then moved rigidly by the head joint:
for LBS this is skin weight 1.0 on ``head`` (:meth:`FullBodyModel.skin_weights`).
So that the rim the face is stitched to moves with it, the body's weights are
ramped to ``head`` over five rings around the hole (:func:`bridge.seam_skin_weights`),
and the body around the hole follows the face rim's identity/expression
displacement (:func:`bridge.strip_links`, :func:`bridge.seam_spread`), applied
in the rest frame before skinning, so it is linear in identity and expression
like Eq. 3.  The hole loop is smoothed once (:func:`bridge.smooth_loop`), a
constant rest offset of the same vertices (``follow_offset``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import backend, lbs
from ..core.errors import ModelFileError
from ..core.skeleton import HEAD_JOINT, NUM_BETAS, NUM_JOINTS
from ..geometry import alignment
from . import bridge
from .body_model import BodyModel
from .face_model import FaceModel, face_albedo, face_geometry

__all__ = ["FullBodyModel", "build_full_model", "eye_spheres", "MAX_CUT_GROWTH"]

#: how often the cut may be widened around folded strip triangles
MAX_CUT_GROWTH = 8
#: face vertex rings next to the seam whose colour is blended into the body's
SEAM_BLEND_RINGS = 4


@dataclass(frozen=True)
class FullBodyModel:
    """Body + bridged 3DMM face.  Build with :func:`build_full_model`.

    body_vertex_ids ``(Vb',)`` body vertices kept; merged_faces ``(Fm, 3)``;
    bridge_faces ``(Fs, 3)`` the strip (merged ids, also in merged_faces);
    hole_loop ``(La,)`` / face_loop ``(Lb,)`` merged ids of the seam's two rims;
    face_to_body similarity from face-model coordinates to the body rest frame
    (beta = 0); face_flipped: the face triangles were re-oriented to face +Z;
    body_weights ``(V, 52)`` the body's skin weights ramped to ``head`` near the
    hole rim (:func:`bridge.seam_skin_weights`), used for the body part; interior ``(n,)`` merged
    ids of the loose body parts kept inside the head (mouth inside), coloured as such;
    follow_ids ``(n,)`` merged body ids near the hole, follow_weights ``(n, Lb)`` and follow_offset
    ``(n, 3)``: at rest they move by ``follow_offset + follow_weights @`` the face rim's displacement
    from the mean face (:func:`bridge.seam_spread`, :func:`bridge.strip_links`, :func:`bridge.smooth_loop`).
    """

    body: BodyModel
    face: FaceModel
    body_vertex_ids: np.ndarray
    merged_faces: np.ndarray
    bridge_faces: np.ndarray
    hole_loop: np.ndarray
    face_loop: np.ndarray
    face_to_body: alignment.Similarity
    alignment_rms: float
    face_flipped: bool
    body_weights: np.ndarray
    interior: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    follow_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    follow_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    follow_offset: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------ sizes
    @property
    def num_body_vertices(self) -> int:
        return int(len(self.body_vertex_ids))

    @property
    def num_vertices(self) -> int:
        return self.num_body_vertices + self.face.num_vertices

    @property
    def face_vertex_slice(self) -> slice:
        return slice(self.num_body_vertices, self.num_vertices)

    # ------------------------------------------------------------ seam checks
    def open_boundary_edges(self) -> np.ndarray:
        """Directed open boundary half-edges ``(E, 2)`` of the merged mesh."""
        return bridge.boundary_half_edges(self.merged_faces)

    def num_open_boundary_edges_on_seam(self) -> int:
        """Open edges touching a seam vertex (0 = watertight seam)."""
        seam = np.concatenate([self.hole_loop, self.face_loop])
        return int(np.isin(self.open_boundary_edges(), seam).any(1).sum())

    def num_open_boundary_edges_elsewhere(self) -> int:
        """Open edges away from the seam (e.g. eye/mouth openings of the 3DMM)."""
        return int(len(self.open_boundary_edges())) - self.num_open_boundary_edges_on_seam()

    # ------------------------------------------------------------ per-vertex data
    def skin_weights(self) -> np.ndarray:
        """LBS weights ``(Vm, 52)``: the body's for kept vertices, 1.0 on ``head`` for the face."""
        w = np.zeros((self.num_vertices, NUM_JOINTS), np.float32)
        w[: self.num_body_vertices] = self.body_weights[self.body_vertex_ids]
        w[self.face_vertex_slice, HEAD_JOINT] = 1.0
        return w

    def vertex_colors(self, body_rgb=None, albedo=None, detail=None) -> np.ndarray:
        """Linear RGB ``(Vm, 3)``: face = the albedo of coefficients ``albedo (<=Ka,)`` (None: the mean
        albedo) plus ``detail (N, 3)`` (the colour seen in the video over it, brows and lips:
        :mod:`model_runtime.face.albedo_detail`; None or another vertex count: none); body =
        ``body_rgb (3,)`` (default: the median of the 3DMM face albedo, so head and body have one
        skin tone).  The face's outer :data:`SEAM_BLEND_RINGS` rings of vertices are blended
        towards the body colour (linearly by ring), so no colour band marks the seam."""
        if albedo is None:
            face_rgb = self.face.mean_albedo
        else:
            a = np.zeros(self.face.sizes["albedo"], np.float32)
            v = np.asarray(albedo, np.float32).reshape(-1)[: len(a)]
            a[: len(v)] = v
            face_rgb = face_albedo(self.face.mean_albedo, self.face.albedo_basis, a[None])[0]
        face_rgb = np.clip(face_rgb, 0.0, 1.0)
        body = np.median(face_rgb, axis=0) if body_rgb is None else np.asarray(body_rgb, np.float32)
        if detail is not None and np.shape(detail) == face_rgb.shape and np.isfinite(detail).all():
            face_rgb = np.clip(face_rgb + np.asarray(detail, np.float32), 0.0, 1.0)
        ring = self._face_rings()                                                   # (N,) 0 on the rim
        t = np.clip(ring / SEAM_BLEND_RINGS, 0.0, 1.0)[:, None]
        c = np.empty((self.num_vertices, 3), np.float32)
        c[: self.num_body_vertices] = body
        c[self.interior] = MOUTH_INSIDE_RGB
        c[self.face_vertex_slice] = (1.0 - t) * body + t * face_rgb
        return c

    def _face_rings(self) -> np.ndarray:
        """``(N,)`` float: rings of edges from each face vertex to the face's outer rim (capped at
        :data:`SEAM_BLEND_RINGS`)."""
        if "rings" not in self._cache:
            faces = np.asarray(self.face.faces, np.int64)
            ring = np.full(self.face.num_vertices, float(SEAM_BLEND_RINGS))
            front = np.zeros(self.face.num_vertices, bool)
            front[np.asarray(self.face_loop) - self.num_body_vertices] = True
            seen = front.copy()
            for k in range(SEAM_BLEND_RINGS):
                ring[front] = k
                nxt = np.zeros_like(front)
                nxt[faces[front[faces].any(1)].ravel()] = True
                front = nxt & ~seen
                seen |= nxt
            self._cache["rings"] = ring
        return self._cache["rings"]

    def rest_vertices(self) -> np.ndarray:
        """Merged vertices ``(Vm, 3)`` at rest, mean shape, neutral face (numpy)."""
        rot = np.broadcast_to(np.eye(3, dtype=np.float32), (1, NUM_JOINTS, 3, 3)).copy()
        z = lambda n: np.zeros((1, n), np.float32)  # noqa: E731
        return self.forward(z(NUM_BETAS), rot, z(self.face.sizes["identity"]), z(self.face.sizes["expression"]))[0][0]

    # ------------------------------------------------------------ forward
    def _consts(self, like):
        """Arrays the forward pass needs, on ``like``'s backend/dtype/device (cached)."""
        key = (type(like).__module__, str(getattr(like, "device", "")), str(like.dtype))
        if key not in self._cache:
            b, f, s = self.body, self.face, self.face_to_body
            rim = self._rim_body_ids()
            sd = b.shapedirs[..., :NUM_BETAS]
            c = {
                "mean": f.mean_shape, "id": f.id_basis, "exp": f.exp_basis,
                "M": (s.scale * s.R).astype(np.float32), "t": s.t.astype(np.float32),
                "rim0": b.v_template[rim], "rim_dirs": b.shapedirs[rim, :, :NUM_BETAS],
                "keep": self.body_vertex_ids,
                "v_template": b.v_template, "shapedirs": sd, "J_regressor": b.J_regressor,
                "weights": self.body_weights, "posedirs": b.posedirs,
                "rim_id": f.id_basis[self.face_loop - self.num_body_vertices],
                "rim_exp": f.exp_basis[self.face_loop - self.num_body_vertices],
                "follow_W": self.follow_weights.astype(np.float32),
                "follow_off": self.follow_offset.astype(np.float32),
                "follow_w": self.body_weights[self.body_vertex_ids[self.follow_ids]],
            }
            self._cache[key] = {k: (v if k == "keep" or v is None else backend.asarray_like(np.ascontiguousarray(v), like))
                                for k, v in c.items()}
        return self._cache[key]

    def _rim_body_ids(self) -> np.ndarray:
        return self.body_vertex_ids[self.hole_loop]

    def forward(self, betas, rot_mats, identity, expression, transl=None, scale=None):
        """Posed merged mesh.

        betas ``(B, <=16)``; rot_mats ``(B, 52, 3, 3)`` relative rotations;
        identity ``(B, Ki)``; expression ``(B, Ke)``; transl ``(B, 3)``; scale ``(B,)``
        (torch or numpy, all the same backend).  Returns
        ``(vertices (B, Vm, 3), joints (B, 52, 3))``.
        """
        c = self._consts(rot_mats)
        Bsz = rot_mats.shape[0]
        k = betas.shape[-1]
        body_v, joints, T = lbs.lbs(betas, rot_mats, c["v_template"], c["shapedirs"], c["J_regressor"],
                                    c["weights"], self.body.parents, c["posedirs"])  # (B,V,3), (B,J,3), (B,J,4,4)
        # face in the body rest frame at beta = 0, then fitted to the beta-shaped hole rim
        fv = face_geometry(c["mean"], c["id"], c["exp"], identity, expression)   # (B, N, 3)
        fv = backend.einsum("ij,bnj->bni", c["M"], fv) + c["t"]
        rim_b = c["rim0"][None] + backend.einsum("bk,vck->bvc", betas, c["rim_dirs"][..., :k])  # (B, L, 3)
        sim = alignment.fit_similarity(c["rim0"], rim_b)                   # rim at beta = 0 -> rim_b
        s, R, t = (backend.asarray_like(a, fv) for a in (sim.scale, sim.R, sim.t))
        fv = s[:, None, None] * backend.einsum("bij,bnj->bni", R, fv) + t[:, None, :]
        if len(self.follow_ids):
            # the body around the hole follows the face rim's displacement from the mean face,
            # in the rest frame, then skinned like its vertices (LBS is linear in the rest position)
            d = backend.einsum("nck,bk->bnc", c["rim_id"], identity) + \
                backend.einsum("nck,bk->bnc", c["rim_exp"], expression)            # (B, Lb, 3) face units
            d = s[:, None, None] * backend.einsum("bij,bnj->bni", R, backend.einsum("ij,bnj->bni", c["M"], d))
            D = backend.einsum("nl,blc->bnc", c["follow_W"], d) + c["follow_off"]  # (B, n, 3) rest frame
            A = backend.einsum("nj,bjcd->bncd", c["follow_w"], T[:, :, :3, :3])   # (B, n, 3, 3) blended rotation
            body_v = body_v.clone() if hasattr(body_v, "clone") else body_v.copy()
            near = self.body_vertex_ids[self.follow_ids]
            body_v[:, near] = body_v[:, near] + backend.einsum("bncd,bnd->bnc", A, D)
        # rigid with the head: T_head already removes the beta-shaped rest head joint
        Th = T[:, HEAD_JOINT]                                                # (B, 4, 4)
        fv = backend.einsum("bij,bnj->bni", Th[:, :3, :3], fv) + Th[:, None, :3, 3]
        verts = backend.cat([body_v[:, c["keep"]], fv], axis=1)
        if scale is not None:
            verts, joints = verts * scale[:, None, None], joints * scale[:, None, None]
        if transl is not None:
            verts, joints = verts + transl[:, None, :], joints + transl[:, None, :]
        assert verts.shape[:2] == (Bsz, self.num_vertices)
        return verts, joints


#: eyeball radius as a fraction of the distance between an eye's two corner landmarks (iBUG 36/39);
#: clearance between the eyeball and the lids, in radii
EYE_RADIUS_FRACTION = 0.5
EYE_CLEARANCE_RADII = 0.05


def eye_spheres(eye_points: np.ndarray, face_vertices: np.ndarray,
                forward: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """Eyeballs from the six iBUG landmarks of each eye and the face mesh around them.

    ``eye_points (2, 6, 3)`` (corner, two upper lid points, corner, two lower lid points, iBUG
    order), ``face_vertices (N, 3)``, ``forward (3,)`` the face's looking direction -> ``(2, 4)``:
    centre xyz and radius per eye (same order and units).  The centre lies on the forward line
    through the landmarks' mean, as far forward as it can while every face vertex over the eye
    (within one radius of that line and in front of the landmarks: lids and skin, not the
    socket's lining behind them) stays :data:`EYE_CLEARANCE_RADII` outside the sphere: the
    eyeball sits just behind the lid margins, as an eye does, and shows through the opening."""
    p = np.asarray(eye_points, np.float64)
    v = np.asarray(face_vertices, np.float64)
    f = np.asarray(forward, np.float64) / np.linalg.norm(forward)
    width = np.linalg.norm(p[:, 0] - p[:, 3], axis=-1)                       # (2,)
    r = EYE_RADIUS_FRACTION * width
    out = np.zeros((2, 4))
    for k in range(2):
        c = p[k].mean(0)
        rel = v - c
        depth = rel @ f                                                      # (N,) forward of c
        lateral = np.linalg.norm(rel - depth[:, None] * f, axis=1)
        R = (1.0 + EYE_CLEARANCE_RADII) * r[k]
        over = (lateral < R) & (depth > 0.0)                                 # lids and skin, not the socket lining
        z = (depth[over] - np.sqrt(R ** 2 - lateral[over] ** 2)).min() if over.any() else -r[k]
        out[k, :3] = c + z * f
        out[k, 3] = r[k]
    return out


#: a loose body part whose centre is this close (m) to an eye of the aligned face is that eye's
#: eyeball, and is dropped
EYE_COMPONENT_DISTANCE = 0.015
#: linear RGB of the mouth's inside (loose body parts that are kept: teeth, tongue, gums)
MOUTH_INSIDE_RGB = (0.35, 0.10, 0.09)


def connected_components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """``(V,)`` component label of every vertex of the triangles ``faces (F, 3)`` (numpy label
    propagation: each vertex takes the smallest label of its triangles until nothing changes)."""
    lab = np.arange(num_vertices)
    f = np.asarray(faces, np.int64)
    while True:
        m = lab[f].min(1)                                                    # (F,)
        new = lab.copy()
        np.minimum.at(new, f.ravel(), np.repeat(m, 3))
        new = new[new]                                                       # pointer jumping
        if np.array_equal(new, lab):
            return lab
        lab = new


def build_full_model(body: BodyModel, face: FaceModel) -> FullBodyModel:
    """Find the face region on ``body``, align ``face`` to it and bridge the seam (see :mod:`bridge`)."""
    bfaces = body.faces.astype(np.int64)
    bverts = body.v_template.astype(np.float64)
    src = body.source or "<body model>"
    # --- face triangles oriented like the body (outward = +Z for the face)
    ffaces = face.faces.astype(np.int64)
    fverts = face.mean_shape.astype(np.float64)
    flipped = bool(bridge.triangle_normals(fverts, ffaces).sum(0)[2] < 0)
    if flipped:
        ffaces = ffaces[:, [0, 2, 1]]
    try:
        face_rim, _ = bridge.outer_loop(ffaces, fverts)
    except ValueError as e:
        raise ModelFileError(face.source or "<face model>", "faces", f"has no usable outer boundary ({e})") from e
    # --- region on the body as one disk; face rim aligned to its rim (beta = 0 rest frame)
    vmask = bridge.face_region_on_body(body)
    try:
        region = bridge.region_to_disk(bfaces, vmask[bfaces].all(1))
        (region_rim,) = bridge.boundary_loops(bfaces[region]) or [None]
    except ValueError as e:
        raise ModelFileError(src, "head_region", f"does not give a usable face region ({e})") from e
    if region_rim is None:
        raise ModelFileError(src, "head_region", "face region is not a disk with one boundary loop")
    sim, rms = bridge.align_loops(fverts[face_rim], bverts[region_rim])
    aligned = sim.apply(fverts)
    face_n = bridge.vertex_normals_np(aligned, ffaces)
    # --- cut one ring wider than the region; where the strip folds (the face rim lies on kept
    #     body surface), widen the cut around the fold and stitch again
    cut = bridge.dilate_faces(bfaces, region)
    # loose body parts in the head (the template's own eyeballs, mouth interior): eyeballs near the
    # face's eyes are dropped (the avatar gets eyeballs fitted to the face's lids, eye_spheres);
    # the others are kept and coloured as the mouth's inside (vertex_colors)
    comp = connected_components(bfaces, body.num_vertices)
    main = np.bincount(comp).argmax()
    eyes = aligned[np.asarray(face.landmarks68)[36:48]].reshape(2, 6, 3).mean(1) \
        if (np.asarray(face.landmarks68)[36:48] >= 0).all() else np.zeros((0, 3))
    loose = np.zeros(body.num_vertices, bool)
    drop = np.zeros(len(bfaces), bool)
    for k in np.unique(comp[comp != main]):
        members = comp == k
        centre = bverts[members].mean(0)
        if len(eyes) and np.linalg.norm(eyes - centre, axis=1).min() < EYE_COMPONENT_DISTANCE:
            drop |= members[bfaces].any(1)
        else:
            loose |= members
    # first with the hole loop smoothed; if the cut cannot grow out of its folds that way (a face
    # rim lying on kept body surface, e.g. an automatic region), again with the cut as it is
    cut0 = cut
    for smooth in (1.0, 0.0):
        cut = cut0
        for _ in range(MAX_CUT_GROWTH):
            try:
                cut = bridge.region_to_disk(bfaces, cut)
                hole_loops = bridge.boundary_loops(bfaces[cut])
            except ValueError as e:
                raise ModelFileError(src, "head_region", f"does not give a usable face region ({e})") from e
            if len(hole_loops) != 1:
                raise ModelFileError(src, "head_region", "the cut for the face is not a disk with one boundary loop")
            hole = hole_loops[0]
            kept_faces = bfaces[~cut & ~drop]
            keep = np.unique(kept_faces)
            remap = np.full(body.num_vertices, -1, np.int64)
            remap[keep] = np.arange(len(keep))
            off = len(keep)
            hole_m, rim_m = remap[hole], face_rim + off
            # the cut runs along mesh edges and zig-zags: smooth the hole loop, fading into the body
            follow_ids, spread = bridge.seam_spread(bverts[keep], remap[kept_faces], hole_m)
            follow_off = spread @ (bridge.smooth_loop(bverts[hole]) - bverts[hole]) * smooth  # (n, 3)
            kept_v = bverts[keep].copy()
            kept_v[follow_ids] += follow_off
            body_n = bridge.vertex_normals_np(kept_v, remap[kept_faces])
            strip = bridge.bridge_loops(hole_m, kept_v[hole_m], rim_m, aligned[face_rim], body_n[hole_m],
                                        face_n[face_rim])
            merged = np.concatenate([remap[kept_faces], ffaces + off, strip]).astype(np.int32)
            rest = np.concatenate([kept_v, aligned])
            folds = bridge.folded_triangles(rest, merged, np.arange(len(merged) - len(strip), len(merged)))
            if not folds.any():
                break
            bad_body = keep[np.unique(strip[folds])[np.unique(strip[folds]) < off]]
            cut = cut | np.isin(bfaces, bad_body).any(1)
        if not folds.any():
            break
    weights = bridge.seam_skin_weights(body.weights, kept_faces, hole, HEAD_JOINT)
    follow_w = spread @ bridge.strip_links(hole_m, rim_m, strip)                    # (n, Lb)
    interior = np.flatnonzero(loose[keep])
    return FullBodyModel(body=body, face=face, body_vertex_ids=keep, merged_faces=merged, interior=interior,
                         bridge_faces=strip.astype(np.int32), hole_loop=hole_m, face_loop=rim_m,
                         face_to_body=sim, alignment_rms=rms, face_flipped=flipped,
                         body_weights=weights, follow_ids=follow_ids, follow_weights=follow_w,
                         follow_offset=follow_off)
