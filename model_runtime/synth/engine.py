"""``generate``: render a batch of synthetic people with exact labels (any torch device).

One sample's path: random parameters (:mod:`.sampling`, seeded per sample) -> merged
full-body mesh (:class:`~model_runtime.models.full_model.FullBodyModel`, built-in or official
models) posed with a retargeted MoCap body pose and random fingers -> camera placement ->
occluder quads -> batched z-buffer (:mod:`.raster`) of the image and of the hand/face crops
(rendered at crop resolution) -> materials and lighting (:mod:`.shading`) over a background
(:mod:`.background`) -> labels projected from the same 3D points, visibility from the z-buffer
(:mod:`.labels`) -> blur, noise, JPEG, 8-bit (:mod:`.postfx`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import background as bgmod
from . import labels as lab
from . import postfx, poses
from .avatar import PARTS, SynthAvatar, build_avatar
from .batch import SynthBatch, concat
from .config import SynthConfig
from .sampling import NUM_OCCLUDERS, draw, sample_seed, skin_colour
from .shading import shade, slot_of_part

#: images rendered together (memory bound; the raster chunks further by candidate count)
CHUNK = 8
_CONTEXTS: dict = {}


@dataclass(frozen=True)
class Context:
    """What a config needs besides the random draws: avatar on the device, pose bank, real images."""

    avatar: SynthAvatar
    bank: torch.Tensor | None
    hand_axes: torch.Tensor
    real: tuple
    builtin_expressions: bool


def context(cfg: SynthConfig, device, log=None) -> Context:
    """The cached :class:`Context` of ``cfg`` on ``device`` (model files, pose bank, image list)."""
    dev = torch.device(device)
    key = (cfg.body, cfg.face, str(dev), cfg.pose_source if cfg.pose else "none", cfg.mocap_sets,
           str(cfg.resolved_data_root()), cfg.real_background, cfg.pose_bank)
    if key not in _CONTEXTS:
        from ..models.full_model import build_full_model
        from ..models.load import load_body_model, load_face_model

        body, face = load_body_model(cfg.body), load_face_model(cfg.face)
        avatar = build_avatar(build_full_model(body, face), dev)
        bank = None
        if cfg.pose and cfg.pose_source != "random" and cfg.pose_bank:
            bank = poses.load_pose_bank(cfg.pose_bank)
        elif cfg.pose and cfg.pose_source != "random":
            split = "heldout" if cfg.pose_source == "mocap-heldout" else "train"
            bank = poses.pose_bank(body, cfg.resolved_data_root(), split, cfg.mocap_sets, log=log)
        # real photos need OpenCV to be read (a bare GPU machine has neither them nor it): procedural then
        real = (bgmod.real_images(str(cfg.resolved_data_root() / "realdata"))
                if cfg.real_background and postfx.opencv() is not None else ())
        _CONTEXTS[key] = Context(avatar, bank, poses.hand_axes(body), real, face.kind == "builtin")
    return _CONTEXTS[key]


def _rot_x(a):
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def _rot_y(a):
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def _rot_z(a):
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def _draw_all(cfg: SynthConfig, ctx: Context, seed: int, indices: list[int]) -> dict[str, torch.Tensor]:
    """Random parameters of ``indices`` stacked ``(N, ...)`` (CPU) + the rotations they imply."""
    face = ctx.avatar.model.face
    sizes = face.sizes
    nb = 0 if ctx.bank is None else len(ctx.bank)
    draws = []
    for i in indices:                                          # per sample: its own generator
        g = torch.Generator().manual_seed(sample_seed(seed, i))
        draws.append(draw(cfg, g, nb, sizes["identity"], sizes["expression"], sizes["albedo"],
                          ctx.builtin_expressions, len(ctx.real)))
    p = {k: torch.stack([d[k] for d in draws]) for k in draws[0]}
    N = len(indices)
    rot = torch.eye(3).repeat(N, 52, 1, 1)
    for j in range(N):                                         # per sample: seeded pose draws
        if cfg.pose:
            if ctx.bank is not None:
                rot[j, :22] = ctx.bank[int(p["pose_index"][j])]
            else:
                rot[j, :22] = poses.random_body_pose(torch.Generator().manual_seed(int(p["random_pose_seed"][j])))
        if cfg.hand_pose:
            gh = torch.Generator().manual_seed(int(p["hand_seed"][j]))
            fingers = poses.random_hand_pair(ctx.hand_axes, gh)
            rot[j, 22:37], rot[j, 37:52] = fingers[0], fingers[1]
            rot[j, 20:22] = rot[j, 20:22] @ poses.random_wrists(gh)
    rot[:, 0] = _rot_y(p["yaw"]) @ rot[:, 0]
    p["rot"] = rot
    return p


def _occluder_quads(p, body_3d, hand_3d):
    """Occluder corners ``(N, NUM_OCCLUDERS, 4, 3)`` camera space (inactive: behind the camera)."""
    N = body_3d.shape[0]
    tgt = p["occ_target"]                                                     # (N, O)
    hands = hand_3d.mean(2)                                                   # (N, 2, 3)
    pts = torch.cat([body_3d, hands, hands], 1)                               # (N, 28, 3): 24..27 hands
    target = pts[torch.arange(N, device=tgt.device)[:, None], tgt]            # (N, O, 3)
    centre = target * p["occ_depth"][..., None]
    size = p["occ_size"] * p["occ_depth"][..., None]                          # (N, O, 2)
    centre = centre + torch.cat([p["occ_offset"] * size, torch.zeros_like(size[..., :1])], -1)
    sx, sy = size[..., 0] / 2, size[..., 1] / 2
    c, s = torch.cos(p["occ_angle"]), torch.sin(p["occ_angle"])
    lx = torch.stack([-sx, sx, sx, -sx], -1)
    ly = torch.stack([-sy, -sy, sy, sy], -1)
    dx = lx * c[..., None] - ly * s[..., None]
    dy = lx * s[..., None] + ly * c[..., None]
    quads = centre[..., None, :] + torch.stack([dx, dy, torch.zeros_like(dx)], -1)
    off = torch.tensor([0.0, 0.0, -10.0], device=quads.device)
    return torch.where(p["occ_active"][..., None, None], quads, off)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> contiguous ``(N, H, W, C)``."""
    return x.permute(0, 2, 3, 1).contiguous()


def _vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    v0, v1, v2 = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
    fn = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    n = torch.zeros_like(verts)
    for k in range(3):                                          # the 3 corners
        n = n.index_add(1, faces[:, k], fn)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _render_chunk(cfg: SynthConfig, ctx: Context, seed: int, indices: list[int], dev) -> SynthBatch:
    av = ctx.avatar
    model = av.model
    N, H, W = len(indices), cfg.height, cfg.width
    p = {k: v.to(dev) for k, v in _draw_all(cfg, ctx, seed, indices).items()}
    # ---------------- posed mesh (model space), then camera space
    verts, joints = model.forward(p["betas"], p["rot"], p["identity"], p["expression"])
    pelvis = joints[:, :1]
    R = _rot_z(torch.deg2rad(p["roll_deg"])) @ _rot_x(torch.deg2rad(p["tilt_deg"])) \
        @ torch.diag(torch.tensor([1.0, -1.0, -1.0], device=dev))
    a = p["alpha"][:, None, None]
    vr = (verts - pelvis) @ R.transpose(1, 2) * a
    jr = (joints - pelvis) @ R.transpose(1, 2) * a
    f = (W / 2) / torch.tan(torch.deg2rad(p["fov_deg"]) / 2)
    K = torch.zeros(N, 3, 3, device=dev)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, W / 2, H / 2, 1.0
    lo, hi = vr.amin(1), vr.amax(1)
    extent = torch.maximum(hi[:, 1] - lo[:, 1], 0.6 * (hi[:, 0] - lo[:, 0]))
    dist = f * extent / (p["height_frac"] * H)
    centre = 0.5 * (lo + hi)
    u, v = p["anchor"][:, 0] * W, p["anchor"][:, 1] * H
    t = torch.stack([(u - W / 2) / f * dist, (v - H / 2) / f * dist, dist], -1) - centre
    verts_c, joints_c = vr + t[:, None], jr + t[:, None]
    p["cam_R"], p["cam_t"], p["distance"], p["pelvis_model"] = R, t, dist, pelvis[:, 0]
    up = R @ torch.tensor([0.0, 1.0, 0.0], device=dev)                       # world up in camera axes
    p["camera_height"] = (-(t * up).sum(-1))                                  # camera above the pelvis, m
    # ---------------- 3D labels
    body_3d = av.body_points(verts_c, joints_c)
    hand_3d = av.hand_points(verts_c, joints_c)
    f68_3d = av.face68_points(verts_c)
    f468_3d = av.face468_points(verts_c)
    # ---------------- occluders, full mesh, raster
    quads = _occluder_quads(p, body_3d, hand_3d)                              # (N, O, 4, 3)
    p["occluder_corners"] = quads
    Vm, Fp = av.num_vertices, av.faces.shape[0]
    occ_faces = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]], device=dev)   # both windings
    occ_faces = torch.cat([occ_faces + Vm + 4 * k for k in range(NUM_OCCLUDERS)])
    faces = torch.cat([av.faces, occ_faces])
    allv = torch.cat([verts_c, quads.reshape(N, -1, 3)], 1)
    vertex_part = torch.cat([av.vertex_part, torch.full((4 * NUM_OCCLUDERS,), PARTS.index("occluder"), device=dev)])
    quv = torch.tensor([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]], [[0, 0], [1, 1], [1, 0]], [[0, 0], [0, 1], [1, 1]]],
                       dtype=torch.float32, device=dev)
    tri_uv = torch.cat([av.tri_uv, quv.repeat(NUM_OCCLUDERS, 1, 1)])
    tri_height = torch.cat([av.tri_height, torch.zeros(4 * NUM_OCCLUDERS, device=dev)])
    normals = _vertex_normals(allv, faces)
    normals[:, Vm:] = torch.tensor([0.0, 0.0, -1.0], device=dev)   # occluder quads face the camera (both windings drawn)
    # ---------------- albedo per vertex
    skin = skin_colour(p["skin_tone"], av.skin_mean)                          # (N, 3)
    fm = model.face
    fa = torch.as_tensor(fm.mean_albedo, device=dev)[None] + torch.einsum(
        "nck,bk->bnc", torch.as_tensor(fm.albedo_basis, device=dev), p["albedo"])
    fa = fa + (skin - av.skin_mean)[:, None]
    albedo = skin[:, None].repeat(1, allv.shape[1], 1)
    albedo[:, model.face_vertex_slice] = fa
    albedo[:, :Vm] = torch.where(av.eye_vertex[None, :, None], av.eye_colour[None], albedo[:, :Vm])
    p["skin_rgb"] = skin
    slots = slot_of_part(p["top"], p["bottom"], p["shoes"], len(PARTS))
    # ---------------- background
    bg = bgmod.procedural(p["bg_colours"], p["bg_noise"], p["bg_layout"], H, W) if cfg.background \
        else bgmod.plain(N, H, W, dev)
    used_real = torch.zeros(N, dtype=torch.bool, device=dev)
    for j in torch.nonzero(p["bg_real"]).flatten().tolist():                 # per sample: a region of a cached photo
        img = ctx.real[int(p["bg_image"][j]) % len(ctx.real)]
        region = bgmod.real_region(img, p["bg_crop"][j].cpu(), W / H)
        if region is not None:
            bg[j] = bgmod.real_background(img, region, W, H, dev)
            used_real[j] = True
    p["bg_real"] = used_real

    def render(Ks: torch.Tensor, h: int, w: int, rep: torch.Tensor, canvas: torch.Tensor):
        """Render the samples ``rep`` with intrinsics ``Ks`` at ``h x w`` over ``canvas (n, h, w, 3)``
        display RGB, channels last (written in place: only the covered pixels are shaded)."""
        cam = allv[rep]
        px = torch.cat([cam[..., :2] / cam[..., 2:3].clamp_min(1e-6) * Ks[:, None, [0, 1], [0, 1]] + Ks[:, None, :2, 2],
                        cam[..., 2:3]], -1)
        r = lab.raster(px, faces, h, w, av.cull)
        pr = {k: v[rep] for k, v in p.items() if k in ("slot_pattern", "slot_freq", "slot_angle", "slot_colour_a",
                                                     "slot_colour_b", "hair_level", "sh", "light_dir", "light_colour")}
        col = shade(r, cam, normals[rep], albedo[rep], faces, vertex_part, tri_uv, tri_height, Fp, slots[rep], pr, flip_normals=av.cull == 0)
        canvas.view(-1, 3)[r.pix] = postfx.linear_to_srgb(col)
        return canvas, r

    allidx = torch.arange(N, device=dev)
    # ---------------- 2D labels (projection of the 3D labels) and crop boxes
    proj = lambda x: lab.project(x, K)                                      # noqa: E731
    body_2d, hand_2d, f68, f468 = proj(body_3d), proj(hand_3d.reshape(N, 42, 3)).reshape(N, 2, 21, 2), proj(f68_3d), proj(f468_3d)
    hand_box = lab.square_box(hand_2d.reshape(N * 2, 21, 2), 1.5, 24.0).reshape(N, 2, 4)
    face_cbox = lab.square_box(f68, 1.6, 24.0)
    hb = hand_box.reshape(N * 2, 4)
    rep2 = allidx.repeat_interleave(2)
    # ---------------- crops rendered at crop resolution over the background cut from the image's
    Kh = lab.crop_intrinsics(K[rep2], hb, cfg.hand_crop)
    bg_chw = bg.permute(0, 3, 1, 2)
    hand_crop, _ = render(Kh, cfg.hand_crop, cfg.hand_crop, rep2, _nhwc(lab.crop_image(bg_chw[rep2], hb, cfg.hand_crop)))
    Kf = lab.crop_intrinsics(K, face_cbox, cfg.face_crop)
    face_crop, _ = render(Kf, cfg.face_crop, cfg.face_crop, allidx, _nhwc(lab.crop_image(bg_chw, face_cbox, cfg.face_crop)))
    del bg_chw
    image, r_full = render(K, H, W, allidx, bg)
    del bg
    # ---------------- visibility from the image's z-buffer
    body_vis = lab.visibility(body_2d, body_3d, r_full.depth, av.body_radius)
    hand_vis = lab.visibility(hand_2d.reshape(N, 42, 2), hand_3d.reshape(N, 42, 3), r_full.depth,
                              av.hand_radius.repeat(2)).reshape(N, 2, 21)
    f68_vis = lab.visibility(f68, f68_3d, r_full.depth, torch.full((68,), 0.01, device=dev))
    face_box = torch.cat([f68.amin(1), f68.amax(1)], -1)
    mask = (r_full.face_id >= 0) & (r_full.face_id < Fp)

    # ---------------- degradations (blur length scales with the crop's zoom)
    encoded: dict[str, list] = {}

    def finish(name, img, rep, zoom, stream):
        """8-bit output ``(n, 3, h, w)`` float with blur/noise/JPEG of ``img (n, h, w, 3)``; ``stream (n,)``
        separates the noise of the image (0), the left/right hand crops (1, 2) and the face crop (3)."""
        seeds = p["pixel_seed"][rep] * 4 + stream
        if img.device.type == "cpu" and postfx.opencv() is not None:   # libjpeg; the JPEG streams go to the shards
            u8, encoded[name] = postfx.finish_cpu(img, p["blur_px"][rep] * zoom, p["blur_angle"][rep],
                                                  p["noise_std"][rep], seeds, p["jpeg_quality"][rep])
            return u8.permute(0, 3, 1, 2).contiguous().float().div_(255)
        x = img.permute(0, 3, 1, 2)
        x = postfx.motion_blur(x, p["blur_px"][rep] * zoom, p["blur_angle"][rep])
        x = postfx.add_noise(x, p["noise_std"][rep], seeds)
        return postfx.quantise8(postfx.jpeg_torch(x, p["jpeg_quality"][rep]))

    zeros = torch.zeros(N, dtype=torch.long, device=dev)
    image = finish("image", image, allidx, torch.ones(N, device=dev), zeros)
    hzoom = cfg.hand_crop / (hb[:, 2] - hb[:, 0])
    hand_crop = finish("hand_crop", hand_crop, rep2, hzoom, 1 + torch.arange(2 * N, device=dev) % 2).reshape(
        N, 2, 3, cfg.hand_crop, cfg.hand_crop)
    face_crop = finish("face_crop", face_crop, allidx, cfg.face_crop / (face_cbox[:, 2] - face_cbox[:, 0]), zeros + 3)
    side = torch.arange(2, device=dev).repeat_interleave(21)                  # (42,) 0 left, 1 right
    hand_hidden = lab.hidden_by_other(hand_2d.reshape(N, 42, 2), hand_vis.reshape(N, 42), r_full.face_id,
                                      av.tri_hand, side).reshape(N, 2, 21)
    tags = lab.hard_case_tags(body_2d, hand_2d, hand_hidden, mask, p, W, H)
    params = {k: v for k, v in p.items() if k not in ("bg_crop", "bg_noise")}
    return SynthBatch(image=image, K=K, body_2d=body_2d, body_3d=body_3d, body_vis=body_vis, hand_2d=hand_2d,
                      hand_3d=hand_3d, hand_vis=hand_vis, face_box=face_box, face_68=f68, face_68_3d=f68_3d,
                      face_68_vis=f68_vis, face_468=f468, mask=mask, hand_crop=hand_crop, hand_box=hand_box,
                      face_crop=face_crop, face_crop_box=face_cbox,
                      index=torch.as_tensor(indices, dtype=torch.long, device=dev), params=params, tags=tags,
                      encoded=encoded)


def generate(config: SynthConfig, seed: int, count: int, device="cpu", start: int = 0, log=None) -> SynthBatch:
    """Render ``count`` samples (indices ``start .. start+count-1`` of the stream of ``seed``).

    The same call gives the same tensors (bit-identical on the same device type and torch
    version; shards are therefore byte-identical).  A sample's random draws depend only on
    ``(config, seed, index)``, so it is the same whatever ``count``/``start`` up to the float
    rounding of batched matrix products (labels to 1e-5, a few pixels by one 8-bit level).
    Images are rendered :data:`CHUNK` at a time.  Returns a
    :class:`~model_runtime.synth.batch.SynthBatch` on ``device``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    dev = torch.device(device)
    ctx = context(config, dev, log=log)
    idx = list(range(int(start), int(start) + int(count)))
    parts = [_render_chunk(config, ctx, seed, idx[i:i + CHUNK], dev) for i in range(0, len(idx), CHUNK)]
    return parts[0] if len(parts) == 1 else concat(parts)

