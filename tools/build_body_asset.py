"""Built-in SMPL-H-structured body from anny (see docs/builtin_models.md).

Pipeline (all in anny's own maths, then converted to the model frame):

1. sample a population of anny phenotypes (anny's WHO-calibrated
   ``SimpleShapeDistribution``, adults 18-80) plus symmetric local body changes;
2. pose every sample into the T-pose with anny's forward pass
   (:func:`tools.anny_rig.tposed`) and re-centre it on its pelvis;
3. template = the reference phenotype (mean of the samples' phenotypes),
   shape space = PCA of the samples about the template, scaled to unit variance;
4. skinning weights = anny's 104 bone weights summed per SMPL-H joint;
5. J_regressor = non-negative, sum-to-one vertex weights around each joint,
   fitted so the regressed joints reproduce anny's (T-posed) bone heads over the
   population;
6. keypoint vertices and the face ("head") region.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from model_runtime.core.skeleton import JOINT_NAMES, NUM_JOINTS

from . import anny_rig as AR

NUM_SHAPE_COMPONENTS = 16
J_REGRESSOR_SUPPORT = 160        # at most this many candidate vertices per joint
# local changes that are not left/right symmetric displacements of a whole part
_EXCLUDED_LOCAL_CHANGES = ("trans-out", "angle-out")
LOCAL_CHANGE_SIGMA = 0.2


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def sample_phenotypes(model, n: int, generator_seed: int) -> torch.Tensor:
    """``(n, 11)`` adult phenotypes (``model.phenotype_labels`` order) from anny's calibrated
    distribution (height/weight/muscle/proportions conditioned on age and sex)."""
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(generator_seed)
    age = torch.distributions.Uniform(torch.tensor(18.0, dtype=model.dtype), torch.tensor(80.0, dtype=model.dtype))
    dist = SimpleShapeDistribution(model, morphological_age_distribution=age)
    _, kw = dist.sample(n)
    return torch.stack([kw[k] for k in model.phenotype_labels], 1)


def symmetric_local_changes(model, n: int, sigma: float, rng: np.random.Generator,
                            labels_filter=None) -> torch.Tensor:
    """``(n, L)`` local changes ~ N(0, sigma) clipped to [-1, 1]; ``l-``/``r-`` pairs share a value."""
    labels = list(model.local_change_labels)
    keep = [i for i, l in enumerate(labels) if not any(e in l for e in _EXCLUDED_LOCAL_CHANGES)
            and (labels_filter is None or labels_filter(l))]
    out = np.zeros((n, len(labels)))
    out[:, keep] = np.clip(rng.normal(0.0, sigma, size=(n, len(keep))), -1.0, 1.0)
    for i, l in enumerate(labels):
        if l.startswith("r-") and "l-" + l[2:] in labels:
            out[:, i] = out[:, labels.index("l-" + l[2:])]
    return torch.as_tensor(out, dtype=model.dtype)


def tposed_model_frame(model, coeffs: torch.Tensor, batch: int = 100):
    """T-posed, pelvis-centred meshes and joint anchors in the model frame.

    coeffs ``(S, C)`` -> ``(verts (S, V, 3), joints (S, 52, 3), heads (S, NB, 3))`` float64 numpy.
    """
    M = torch.tensor(AR.ANNY_TO_MODEL, dtype=model.dtype)
    labels = list(model.bone_labels)
    anchor = np.zeros((NUM_JOINTS, len(labels)))
    for j, name in enumerate(JOINT_NAMES):
        bones = AR.JOINT_ANCHOR_BONES[name]
        anchor[j, [labels.index(b) for b in bones]] = 1.0 / len(bones)
    anchor_t = torch.as_tensor(anchor, dtype=model.dtype)
    vs, js, hs = [], [], []
    with torch.no_grad():
        for s in range(0, coeffs.shape[0], batch):
            out = AR.tposed(model, coeffs[s:s + batch])
            heads = out["bone_poses"][..., :3, 3] @ M.T
            verts = out["vertices"] @ M.T
            root = heads[:, :1].clone()
            vs.append((verts - root).numpy())
            hs.append((heads - root).numpy())
            js.append(torch.einsum("jb,sbc->sjc", anchor_t, heads - root).numpy())
    return np.concatenate(vs), np.concatenate(js), np.concatenate(hs)


# --------------------------------------------------------------------------------------------
# model parts
# --------------------------------------------------------------------------------------------
def shape_space(template: np.ndarray, samples: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of ``samples (S, V, 3)`` about ``template (V, 3)``.

    Returns ``(shapedirs (V, 3, k), explained (k,))``: component i scaled by the
    population standard deviation along it, so beta ~ N(0, I) spans the sampled
    population; ``explained`` is the fraction of the total second moment.
    """
    S = samples.shape[0]
    X = (samples - template[None]).reshape(S, -1)
    gram = X @ X.T / S
    lam, U = np.linalg.eigh(gram)
    order = np.argsort(lam)[::-1][:k]
    lam, U = lam[order], U[:, order]
    comps = (X.T @ U) / np.sqrt(lam * S)[None]        # unit-norm principal directions
    # fix signs deterministically: the largest-magnitude entry of each direction is positive
    sign = np.sign(comps[np.abs(comps).argmax(0), np.arange(k)])
    comps = comps * sign[None]
    shapedirs = comps * np.sqrt(lam)[None]
    return shapedirs.reshape(template.shape[0], 3, k), lam / np.trace(gram)


def merged_weights(model, bone_to_joint: np.ndarray) -> np.ndarray:
    """anny's sparse bone weights summed per SMPL-H joint: ``(V, 52)``, rows sum to 1."""
    w = model.vertex_bone_weights.numpy()        # (V, 9)
    i = model.vertex_bone_indices.numpy()        # (V, 9)
    V = w.shape[0]
    out = np.zeros((V, NUM_JOINTS))
    np.add.at(out, (np.repeat(np.arange(V), w.shape[1]), bone_to_joint[i].ravel()), w.ravel())
    return out / out.sum(1, keepdims=True)


def joint_support(template: np.ndarray, template_joints: np.ndarray, weights: np.ndarray,
                  max_support: int = J_REGRESSOR_SUPPORT) -> list[np.ndarray]:
    """Candidate vertices per joint: a ring around the joint.

    Vertices skinned (weight sum > 0.5) to the joint, its parent or its children,
    inside a slab through the joint perpendicular to the parent->joint axis
    (half-width 15% of that bone, 4-30 mm), thinned evenly to ``max_support``.
    A ring surrounds the joint, so a convex combination can reach the joint centre.
    """
    from model_runtime.core.skeleton import PARENTS

    out = []
    for j in range(NUM_JOINTS):
        p = PARENTS[j]
        axis = template_joints[j] - template_joints[p] if p >= 0 else np.array([0.0, 1.0, 0.0])
        length = np.linalg.norm(axis) if p >= 0 else 0.1
        axis = axis / max(np.linalg.norm(axis), 1e-9)
        near_bones = [j] + ([p] if p >= 0 else []) + list(np.nonzero(PARENTS == j)[0])
        skinned = weights[:, near_bones].sum(1) > 0.5
        half = float(np.clip(0.15 * length, 0.004, 0.03))
        slab = np.abs((template - template_joints[j]) @ axis) < half
        cand = np.nonzero(skinned & slab)[0]
        if len(cand) < 8:   # degenerate geometry: fall back to the nearest skinned vertices
            cand = np.nonzero(skinned)[0]
            cand = cand[np.argsort(np.linalg.norm(template[cand] - template_joints[j], axis=1))[:max_support]]
        if len(cand) > max_support:
            cand = cand[np.linspace(0, len(cand) - 1, max_support).round().astype(int)]
        out.append(cand)
    return out


def fit_joint_regressor(verts: np.ndarray, joints: np.ndarray, template: np.ndarray,
                        template_joints: np.ndarray, support: list[np.ndarray]):
    """Sparse non-negative regressor ``(52, V)`` (rows sum to 1) with ``J = R @ verts``.

    verts ``(S, V, 3)``, joints ``(S, 52, 3)``: the population the joints must follow;
    the template's rows weigh as much as the whole population, so beta = 0 (the
    shape the anny comparison uses) is fitted almost exactly.  Row j is an NNLS fit
    over the vertices ``support[j]`` with a soft sum-to-one row, then renormalised.
    Returns ``(J_regressor, rms_error_m (52,), template_error_m (52,))``.  (Loop
    over joints: build time only.)
    """
    V = template.shape[0]
    S = verts.shape[0]
    R = np.zeros((NUM_JOINTS, V))
    rms, t_err = np.zeros(NUM_JOINTS), np.zeros(NUM_JOINTS)
    w_t = np.sqrt(S)
    lam = 10.0
    for j in range(NUM_JOINTS):
        near = support[j]
        A = verts[:, near].transpose(0, 2, 1).reshape(-1, len(near))    # (S*3, n)
        b = joints[:, j].reshape(-1)
        At, bt = template[near].T, template_joints[j]
        x, _ = scipy.optimize.nnls(np.vstack([A, w_t * At, lam * np.ones((1, len(near)))]),
                                   np.concatenate([b, w_t * bt, [lam]]), maxiter=100 * len(near))
        x = x / x.sum()
        R[j, near] = x
        rms[j] = np.sqrt(np.mean((A @ x - b) ** 2) * 3)
        t_err[j] = np.linalg.norm(At @ x - bt)
    return R, rms, t_err


def keypoint_vertices(model, template: np.ndarray, heads: np.ndarray, weights: np.ndarray) -> dict[str, int]:
    """Vertex ids of the extended body keypoints and fingertips on the T-posed template.

    template ``(V, 3)`` and heads ``(NB, 3)`` in the model frame.  Methods:
    nose = most frontal (+Z) skin vertex near the mid-sagittal plane above the chin;
    eyes/ears = vertex nearest to anny's own COCO keypoint regressor output;
    heel = most posterior vertex of the foot near the ground; big toe = most
    frontal vertex of the big toe; fingertips = the vertex furthest along the
    last phalanx direction among vertices skinned mainly to that phalanx.
    """
    from anny.paths import get_anny_root_dir

    labels = list(model.bone_labels)
    H = lambda b: heads[labels.index(b)]  # noqa: E731
    coco = torch.load(get_anny_root_dir() / "data" / "keypoints" / "coco.pth", weights_only=True)
    base = model.base_mesh_vertex_indices.numpy()
    dense_w = np.zeros((template.shape[0], len(labels)))
    np.add.at(dense_w, (np.repeat(np.arange(template.shape[0]), 9), model.vertex_bone_indices.numpy().ravel()),
              model.vertex_bone_weights.numpy().ravel())
    out: dict[str, int] = {}
    head_j = JOINT_NAMES.index("head")
    on_head = weights[:, head_j] > 0.5
    mid = on_head & (np.abs(template[:, 0]) < 0.004)
    cand = np.nonzero(mid)[0]
    out["nose"] = int(cand[np.argmax(template[cand, 2])])
    for name in ("left_eye", "right_eye", "left_ear", "right_ear"):
        w = coco[name][base].numpy()
        p = w @ template / w.sum()
        out[name] = int(np.argmin(np.linalg.norm(template - p, axis=1)))
    for side, s in (("left", ".L"), ("right", ".R")):
        foot = dense_w[:, [labels.index(b) for b in labels if b.endswith(s) and (b.startswith("foot") or b.startswith("toe"))]].sum(1) > 0.5
        low = foot & (template[:, 1] < template[foot, 1].min() + 0.02)
        c = np.nonzero(low)[0]
        out[f"{side}_heel"] = int(c[np.argmin(template[c, 2])])
        toe = dense_w[:, [labels.index(f"toe1-1{s}"), labels.index(f"toe1-2{s}")]].sum(1) > 0.5
        c = np.nonzero(toe)[0]
        out[f"{side}_big_toe"] = int(c[np.argmax(template[c, 2])])
        for i, f in enumerate(("thumb", "index", "middle", "ring", "pinky"), 1):
            b = labels.index(f"finger{i}-3{s}")
            c = np.nonzero(dense_w[:, b] > 0.5)[0]
            d = H(f"finger{i}-3{s}") - H(f"finger{i}-2{s}")
            out[f"{side}_{f}4"] = int(c[np.argmax((template[c] - H(f"finger{i}-3{s}")) @ d)])
    return out


def head_region(model, template: np.ndarray, faces: np.ndarray, nose: int, skin: np.ndarray,
                on_head: np.ndarray, phenotype: torch.Tensor, radius: float = 0.105,
                behind_nose: float = 0.10, moved_mm: float = 0.5) -> np.ndarray:
    """Face patch replaced by the 3DMM: ``(V,)`` bool, one connected piece of the skin
    whose only open boundary is its outer loop.

    Union of (a) the face front: skin vertices skinned mainly to the head joint
    (``on_head``) within ``radius`` of a centre ``behind_nose`` behind the nose tip
    and in front of it; (b) every skin vertex that anny's facial actions move by
    more than ``moved_mm`` (except ``tongueOut`` and ``eyeLook*``, which move the
    tongue and eyeballs); (c) the eye sockets and the mouth cavity (closed
    pockets behind the lids and lips).  Holes are then filled and only the piece
    holding the nose is kept.  Eyeballs and tongue are separate mesh components
    and stay on the body.
    """
    from anny.face_segmentation import get_face_segmentation_mask

    V = template.shape[0]
    d = template - (template[nose] - np.array([0.0, 0.0, behind_nose]))
    front = skin & on_head & (np.linalg.norm(d, axis=1) < radius) & (d[:, 2] > 0.0)
    names = list(model.facial_action_labels)
    acts = [i for i, n in enumerate(names) if n != "tongueOut" and not n.startswith("eyeLook")]
    with torch.no_grad():   # phenotype (1, 11); facial actions are linear blendshapes
        base = model.get_rest_vertices(AR.blendshape_coeffs(model, phenotype))
        fa = torch.eye(len(names), dtype=phenotype.dtype)[acts]
        ex = model.get_rest_vertices(AR.blendshape_coeffs(model, phenotype.expand(len(acts), -1), facial_actions=fa))
    moved = skin & ((ex - base).norm(dim=2).amax(0).numpy() > moved_mm / 1000)
    cav_faces = get_face_segmentation_mask(model, ["mouth_cavity", "eye_cavity.L", "eye_cavity.R"]).numpy()
    cavity = np.zeros(V, bool)
    cavity[faces[cav_faces].ravel()] = True
    region = front | moved | (cavity & skin)
    # fill holes: complement pieces other than the body's main piece join the region
    rest = skin & ~region
    lab = mesh_components(faces[rest[faces].all(1)], V)
    main = np.bincount(lab[rest]).argmax()
    region |= rest & (lab != main)
    # whole triangles only, the connected piece holding the nose
    F = faces[region[faces].all(1)]
    lab = mesh_components(F, V)
    out = np.zeros(V, bool)
    out[np.unique(F.ravel())] = True
    return out & (lab == lab[nose])


def mesh_components(faces: np.ndarray, V: int) -> np.ndarray:
    """Connected-component label per vertex ``(V,)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    A = coo_matrix((np.ones(faces.size), (faces.ravel(), faces[:, [1, 2, 0]].ravel())), shape=(V, V))
    return connected_components(A, directed=False)[1]


# --------------------------------------------------------------------------------------------
def build_body(model, num_samples: int, seed: int, log=print) -> dict[str, np.ndarray]:
    """All arrays of ``body_builtin.npz`` (float64/int; the writer picks storage dtypes)."""
    rng = np.random.default_rng(seed)
    bone_to_joint = AR.check_bone_map(list(model.bone_labels), list(model.bone_parents))
    phen = sample_phenotypes(model, num_samples, seed)
    local = symmetric_local_changes(model, num_samples, LOCAL_CHANGE_SIGMA, rng)
    ref = phen.mean(0, keepdim=True)
    log(f"reference phenotype: {dict(zip(model.phenotype_labels, np.round(ref[0].numpy(), 3).tolist()))}")

    coeffs = AR.blendshape_coeffs(model, phen, local)
    verts, joints, _ = tposed_model_frame(model, coeffs)
    t_v, t_j, t_h = tposed_model_frame(model, AR.blendshape_coeffs(model, ref))
    template, template_joints, template_heads = t_v[0], t_j[0], t_h[0]
    log(f"posed {num_samples} samples; template height {np.ptp(template[:, 1]):.3f} m")

    shapedirs, explained = shape_space(template, verts, NUM_SHAPE_COMPONENTS)
    log(f"shape space: first components explain {np.round(explained[:6], 3).tolist()}, "
        f"16 explain {explained.sum():.4f} of the second moment about the template")

    weights = merged_weights(model, bone_to_joint)
    fit_idx = rng.choice(num_samples, size=min(300, num_samples), replace=False)
    support = joint_support(template, template_joints, weights)
    J_regressor, rms, t_err = fit_joint_regressor(verts[fit_idx], joints[fit_idx], template, template_joints, support)
    log(f"J_regressor: rms joint error over the population {1000 * rms.mean():.2f} mm "
        f"(max {1000 * rms.max():.2f} mm at {JOINT_NAMES[int(rms.argmax())]}); "
        f"template joints off by {1000 * t_err.mean():.2f} mm mean, {1000 * t_err.max():.2f} mm max")

    faces = model.get_triangular_faces().numpy().astype(np.int64)
    V = template.shape[0]
    kp = keypoint_vertices(model, template, template_heads, weights)
    comp = mesh_components(faces, V)
    skin = comp == np.bincount(comp).argmax()
    region = head_region(model, template, faces, kp["nose"], skin,
                         weights[:, JOINT_NAMES.index("head")] > 0.5, ref)
    log(f"head region: {region.sum()} vertices")
    names = np.array(list(kp.keys()))
    return {
        "v_template": template,
        "shapedirs": shapedirs,
        "J_regressor": J_regressor,
        "weights": weights,
        "faces": faces,
        "extra_keypoint_vertices_names": names,
        "extra_keypoint_vertices_ids": np.array([kp[n] for n in names], np.int64),
        "extra_head_region": region,
        "extra_skin_component": skin,
        "extra_reference_phenotype_labels": np.array(model.phenotype_labels),
        "extra_reference_phenotype": ref[0].numpy(),
        "extra_shape_explained_variance": explained,
        "extra_joint_regressor_rms_m": rms,
        "extra_joint_regressor_template_error_m": t_err,
        "extra_bone_labels": np.array(model.bone_labels),
        "extra_bone_to_joint": bone_to_joint.astype(np.int64),
        "extra_uv": model.texture_coordinates.numpy(),
        "extra_face_uv_ids": model.face_texture_coordinate_indices.numpy().astype(np.int64),
    }
