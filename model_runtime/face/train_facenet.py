"""FaceNet training, MoFA-style (no scans): the fit's energy as the loss, plus distillation of the fit.

Per batch of cached face crops (:mod:`.facenet_data`):

1. **Augmented crops** (:func:`augment`): the network's square crop around the face box is
   jittered as the pipeline's coarse boxes are (centre +-``shift`` of the side, side x
   exp(N(0, ``scale``)), roll +-``roll_deg``), cut from the stored crop with ``grid_sample``;
   colour gains and sometimes grey (AFLW2000 has grey photos).  Every crop is an exact pinhole
   camera of the original image (focal ``a f``, the roll a rotation about the optical axis), so
   the landmarks, the teacher's pose and the skin mask follow exactly.
2. **Losses** (:func:`losses`), all in crop pixels with that camera:

   * landmark: MediaPipe's 468 landmarks against the predicted mesh's correspondence points
     (:mod:`.correspondence`), the fit's Charbonnier at 1 % of the face size, weighted by the
     correspondence weights;
   * photometric (Eq. 4-5): the crop (sRGB -> linear) sampled with ``grid_sample`` at the projected
     vertices that face the camera, pass a coarse z-buffer and lie on skin (MediaPipe's face oval
     minus eyes, brows, lips), against albedo x SH irradiance, L2,1 as in MoFA (differentiable in
     the geometry, the albedo and the light);
   * statistical priors: the fit's ``||identity||^2``, ``||albedo||^2``, ``||expression||^2`` (+ L1 for
     ARKit weights), SH towards white ambient light;
   * distillation of the fit (cheap, optional ``w_distill``): the fit's mesh projected into the crop
     (all vertices, the same Charbonnier) and its coefficients.
3. Adam, cosine learning rate, checkpoints every ``checkpoint_every`` steps (``--resume``), a CSV of
   the terms, the held-out clip's landmark error every ``eval_every`` steps.

CPU and CUDA (``device``); torch threads are the caller's choice.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..models.face_model import NUM_SH, FaceModel, face_albedo, face_geometry, sh_shading, vertex_normals
from .facenet import CROP_SCALE, INPUT_SIZE, FaceNetModule, crop_pose, face_anchor, load_state
from .facenet_data import STORE_SCALE


@dataclass(frozen=True)
class TrainConfig:
    """Steps, batch, learning rate, augmentation and loss weights (the fit's weights where shared)."""

    steps: int = 6000
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    shift: float = 0.08            # box centre jitter, fraction of the crop side (std)
    scale: float = 0.12            # log side jitter (std)
    roll_deg: float = 15.0         # uniform roll +-
    grey: float = 0.15             # probability of a grey crop
    synth_share: float = 0.0       # share of a batch drawn from the synthetic renders (.facenet_synth; 0: real
                                   # faces only, as the shipped weights; session 7's 0.3 and 0.15 were not shipped)
    synth_expression: bool = True  # False: synthetic rows teach pose, identity, albedo and light only; their
                                   # geometry uses the exact expression and the expression head learns from
                                   # real faces alone (the renders' drawn mouth and eyes are not a real one's)
    w_landmark: float = 1.0
    w_photo: float = 0.1
    w_identity: float = 2e-3
    w_expression: float = 1e-3
    w_expression_l1: float = 3e-2
    w_albedo: float = 2e-3
    w_sh: float = 1e-2
    w_distill: float = 0.5         # the fit's projected mesh (Charbonnier, as the landmark term)
    w_distill_coef: float = 0.2    # the fit's identity, albedo, lighting (squared error)
    w_distill_expression: float = 1.0  # the fit's expression (squared error): keeps the keys' meaning
    w_distill_sh: float = 2.0      # the fit's lighting again (squared error): the network's came out too dark
    landmark_sigma: float = 0.01
    photo_sigma: float = 0.05
    photo_stride: int = 2          # every k-th vertex in the photometric term
    zbuffer: int = 32
    checkpoint_every: int = 250
    eval_every: int = 500


class ModelTensors:
    """The face model's arrays on ``device`` for the losses (built once): the 468 landmark points' bases
    (the tracker's ``L0 + Li i + Le e``), and at every ``stride``-th vertex the shape and albedo bases and the
    mean face's outward normals (expressions barely turn them, as in the tracker), so a step never builds
    the whole mesh."""

    def __init__(self, model: FaceModel, corr, device, stride: int = 2):
        t = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a), dtype=dt, device=device)  # noqa: E731
        from .render import outward_sign

        pts = lambda basis: np.moveaxis(corr.points(np.moveaxis(np.asarray(basis, np.float64), -1, 0)), 0, -1)  # noqa: E731
        self.lm_mean = t(corr.points(np.asarray(model.mean_shape, np.float64)[None])[0])        # (468, 3)
        self.lm_id, self.lm_exp = t(pts(model.id_basis)), t(pts(model.exp_basis))              # (468, 3, K)
        sub = np.arange(0, model.num_vertices, stride)
        self.mean, self.id_b, self.exp_b = t(model.mean_shape[sub]), t(model.id_basis[sub]), t(model.exp_basis[sub])
        self.alb_mean, self.alb_b = t(model.mean_albedo[sub]), t(model.albedo_basis[sub])
        n = outward_sign(model) * vertex_normals(np.asarray(model.mean_shape, np.float64)[None], model.faces)[0]
        self.normals = t(n[sub])                                                                 # (V, 3)
        self.corr_w = t(corr.weights)
        self.anchor = t(face_anchor(model, corr))
        self.box = model.kind == "builtin"

    def landmarks(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Model-space landmark points ``(B, 468, 3)`` of coefficients ``(B, Ki)``, ``(B, Ke)``."""
        return face_geometry(self.lm_mean, self.lm_id, self.lm_exp, identity, expression)

    def vertices(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Model-space vertices of the subset ``(B, V, 3)``."""
        return face_geometry(self.mean, self.id_b, self.exp_b, identity, expression)


def _rot_z(theta: torch.Tensor) -> torch.Tensor:
    """Roll angles ``(B,)`` -> rotations about the optical axis ``(B, 3, 3)`` (image-plane rotation by theta)."""
    c, s, o, z = torch.cos(theta), torch.sin(theta), torch.ones_like(theta), torch.zeros_like(theta)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


def augment(data: dict, idx: np.ndarray, cfg: TrainConfig, gen: torch.Generator, device, size: int = INPUT_SIZE,
            jitter: bool = True) -> dict[str, torch.Tensor]:
    """Network crops of cached samples ``idx (B,)`` -> tensors on ``device``: ``x (B, 3, S, S)`` sRGB 0..1,
    ``linear`` (the same, linear RGB), ``mask (B, 1, S, S)``, ``K (B, 3, 3)`` crop camera, ``landmarks (B, 468, 2)``
    crop px, ``face_size (B,)`` px, teacher ``R (B, 3, 3)``, ``t (B, 3)`` (crop camera) and coefficients."""
    B = len(idx)
    C = data["crop"].shape[1]
    crop = torch.as_tensor(data["crop"][idx], device=device).flip(-1).permute(0, 3, 1, 2).float() / 255.0
    mask = torch.as_tensor(data["mask"][idx], device=device)[:, None].float()
    r = lambda *s: torch.randn(*s, generator=gen).to(device)  # noqa: E731
    side0 = C * CROP_SCALE / STORE_SCALE
    if jitter:
        side = side0 * torch.exp(cfg.scale * r(B)).clamp(0.7, 1.4)
        centre = C / 2 + cfg.shift * side0 * r(B, 2).clamp(-2.5, 2.5)
        theta = math.radians(cfg.roll_deg) * (2 * torch.rand(B, generator=gen).to(device) - 1)
    else:
        side = torch.full((B,), side0, device=device)
        centre = torch.full((B, 2), C / 2, device=device)
        theta = torch.zeros(B, device=device)
    Rz = _rot_z(theta)
    R2 = Rz[:, :2, :2]                                                        # (B, 2, 2)
    a = size / side                                                           # stored px -> net px
    theta_grid = torch.cat([(side / C)[:, None, None] * R2.transpose(1, 2), (2 * centre / C - 1)[..., None]], -1)
    grid = F.affine_grid(theta_grid, (B, 3, size, size), align_corners=False)
    x = F.grid_sample(crop, grid, mode="bilinear", padding_mode="border", align_corners=False)
    m = F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if jitter:                                                                # colour: gains, sometimes grey
        x = (x * torch.exp(0.1 * r(B, 3, 1, 1))).clamp(0, 1)
        grey = (torch.rand(B, generator=gen) < cfg.grey).to(device)
        x = torch.where(grey[:, None, None, None], x.mean(1, keepdim=True).expand_as(x), x)
    # image px -> net px: q = a R2 (a_s p + b_s - c') + S/2
    As = torch.as_tensor(data["A"][idx], device=device, dtype=torch.float32)   # (B, 2, 3) image -> stored
    K = torch.as_tensor(data["K"][idx], device=device, dtype=torch.float32)
    M = a[:, None, None] * R2 @ As[:, :, :2]                                   # (B, 2, 2) = a a_s R2
    m_b = (a[:, None, None] * R2 @ (As[:, :, 2] - centre)[..., None])[..., 0] + size / 2
    Kc = K.clone()
    scale = a * As[:, 0, 0]
    Kc[:, 0, 0], Kc[:, 1, 1] = scale * K[:, 0, 0], scale * K[:, 1, 1]
    Kc[:, :2, 2] = (M @ K[:, :2, 2:3])[..., 0] + m_b
    lm = torch.as_tensor(data["landmarks"][idx], device=device)
    lm = (a[:, None, None] * (lm - centre[:, None]) @ R2.transpose(1, 2)) + size / 2
    span = lm.amax(1) - lm.amin(1)
    t = lambda k: torch.as_tensor(data[k][idx], device=device, dtype=torch.float32)  # noqa: E731
    return {"x": x, "linear": x ** 2.2, "mask": m, "K": Kc, "landmarks": lm,
            "face_size": torch.sqrt(span.prod(-1).clamp_min(1.0)),
            "R": Rz @ t("rotation"), "t": (Rz @ t("translation")[..., None])[..., 0],
            "identity": t("identity"), "expression": t("expression"), "albedo": t("albedo"), "sh": t("sh")}


def project_batch(cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """``cam (B, N, 3)``, ``K (B, 3, 3)`` -> px ``(B, N, 2)``."""
    z = cam[..., 2:3].clamp_min(1e-4)
    return cam[..., :2] / z * torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None] + K[:, None, :2, 2]


def visible(cam: torch.Tensor, px: torch.Tensor, normals: torch.Tensor, g: int) -> torch.Tensor:
    """``(B, V)`` float visibility (no gradient): facing the camera and within 10 % of the face's depth
    range of the nearest vertex in its cell of a ``g x g`` vertex z-buffer (the fit's test, batched)."""
    with torch.no_grad():
        B, V = cam.shape[:2]
        facing = (normals * F.normalize(cam, dim=-1)).sum(-1) < -0.05
        lo, hi = px.amin(1, keepdim=True), px.amax(1, keepdim=True)
        cell = ((px - lo) / (hi - lo).clamp_min(1e-6) * (g - 1)).round().long().clamp(0, g - 1)
        key = (torch.arange(B, device=cam.device)[:, None] * g + cell[..., 1]) * g + cell[..., 0]
        z = torch.where(facing, cam[..., 2], torch.full_like(cam[..., 2], float("inf")))
        zmin = torch.full((B * g * g,), float("inf"), device=cam.device).scatter_reduce(
            0, key.reshape(-1), z.reshape(-1), reduce="amin").view(-1)[key]
        rng = (cam[..., 2].amax(1) - cam[..., 2].amin(1)).clamp_min(1e-6)[:, None]
        return (facing & (z <= zmin + 0.1 * rng)).float()


def _sample(img: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``img (B, C, S, S)`` at ``px (B, V, 2)`` -> ``(B, V, C)`` (0 outside)."""
    S = img.shape[-1]
    g = px / S * 2 - 1
    return F.grid_sample(img, g[:, None], mode="bilinear", padding_mode="zeros", align_corners=False)[:, :, 0] \
        .transpose(1, 2)


def losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], mt: ModelTensors, cfg: TrainConfig,
           size: int = INPUT_SIZE) -> dict[str, torch.Tensor]:
    """The loss terms (each a scalar, weighted) of :meth:`FaceNetModule.split` outputs on ``batch`` (:func:`augment`)."""
    R, t = crop_pose(out, batch["K"], mt.anchor, size)
    Rt = R.transpose(1, 2)
    e_geo, real = out["expression"], None
    if not cfg.synth_expression and "synthetic" in batch:      # synthetic rows: the exact expression
        syn = batch["synthetic"]
        e_geo = torch.where(syn[:, None], batch["expression"], out["expression"])
        real = (~syn).float()
    scale2 = (cfg.landmark_sigma * batch["face_size"]) ** 2                                      # (B,)
    lm = project_batch(mt.landmarks(out["identity"], e_geo) @ Rt + t[:, None], batch["K"])
    r2 = ((lm - batch["landmarks"]) ** 2).sum(-1) / scale2[:, None]
    w = mt.corr_w
    terms = {"landmark": cfg.w_landmark * ((torch.sqrt(1 + r2) - 1) @ w / w.sum()).mean()}
    # photometric (Eq. 4-5) at the visible skin vertices of the subset
    cam = mt.vertices(out["identity"], e_geo) @ Rt + t[:, None]                                  # (B, V, 3)
    px = project_batch(cam, batch["K"])
    normals = mt.normals @ Rt                                                                    # (B, V, 3)
    vis = visible(cam, px, normals, cfg.zbuffer)
    vis = vis * (_sample(batch["mask"], px.detach())[..., 0] > 0.5).float()
    refl = face_albedo(mt.alb_mean, mt.alb_b, out["albedo"])
    col = sh_shading(refl, normals, out["sh"])
    obs = _sample(batch["linear"], px)
    err = torch.sqrt(((obs - col) ** 2).sum(-1) + 1e-8) / cfg.photo_sigma
    terms["photo"] = cfg.w_photo * ((vis * err).sum(1) / vis.sum(1).clamp_min(20.0)).mean()
    # priors (the fit's)
    e = out["expression"]
    terms["identity"] = cfg.w_identity * (out["identity"] ** 2).sum(1).mean()
    terms["expression"] = cfg.w_expression * (e ** 2).sum(1).mean()
    if mt.box:
        terms["expression_l1"] = cfg.w_expression_l1 * e.abs().sum(1).mean()
    terms["albedo"] = cfg.w_albedo * (out["albedo"] ** 2).sum(1).mean()
    mu = out["sh"].view(-1, 3, NUM_SH)
    amb = torch.zeros(3, NUM_SH, device=mu.device)
    amb[:, 0] = 0.8
    terms["sh"] = cfg.w_sh * (((mu - amb) ** 2).sum((1, 2)) + 10 * ((mu - mu.mean(1, keepdim=True)) ** 2).sum((1, 2))
                              ).mean()
    # distillation of the fit
    if cfg.w_distill > 0:
        with torch.no_grad():
            tv = mt.vertices(batch["identity"], batch["expression"])
            tpx = project_batch(tv @ batch["R"].transpose(1, 2) + batch["t"][:, None], batch["K"])
        d2 = ((px - tpx) ** 2).sum(-1) / scale2[:, None]
        terms["distill"] = cfg.w_distill * (torch.sqrt(1 + d2) - 1).mean()
    sq = lambda k: ((out[k] - batch[k]) ** 2).sum(1).mean()  # noqa: E731
    if cfg.w_distill_coef > 0:
        terms["distill_coef"] = cfg.w_distill_coef * (0.1 * sq("identity") + 0.1 * sq("albedo") + sq("sh"))
    if cfg.w_distill_sh > 0:
        terms["distill_sh"] = cfg.w_distill_sh * sq("sh")
    if cfg.w_distill_expression > 0:
        # the landmarks alone do not fix which of the redundant ARKit keys moves (a mouth opened by
        # mouthLowerDown + mouthUpperUp instead of jawOpen fits as well): the fit's keys do
        se = ((out["expression"] - batch["expression"]) ** 2).sum(1)
        se = se.mean() if real is None else (se * real).sum() / real.sum().clamp_min(1.0)
        terms["distill_expression"] = cfg.w_distill_expression * se
    return terms


@torch.no_grad()
def landmark_error(net: FaceNetModule, data: dict, idx: np.ndarray, mt: ModelTensors, cfg: TrainConfig, device,
                   jitter: bool) -> float:
    """Mean distance of the predicted 468 landmark points to MediaPipe's, in % of the face size (sqrt(w h)
    of the landmark box), on samples ``idx`` (crops jittered with a fixed seed if ``jitter``)."""
    net.eval()
    gen = torch.Generator().manual_seed(1234)
    errs = []
    for i in range(0, len(idx), 64):
        b = augment(data, idx[i:i + 64], cfg, gen, device, net.input_size, jitter=jitter)
        out = net.split(net(b["x"]))
        R, t = crop_pose(out, b["K"], mt.anchor, net.input_size)
        lm = project_batch(mt.landmarks(out["identity"], out["expression"]) @ R.transpose(1, 2) + t[:, None], b["K"])
        errs.append(((lm - b["landmarks"]).norm(dim=-1).mean(1) / b["face_size"]).cpu())
    net.train()
    return float(torch.cat(errs).mean() * 100) if errs else float("nan")


def split_synthetic(data: dict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` of the cache split into (synthetic renders, real faces) by source name
    (:data:`.facenet_synth.SYNTH_PREFIX`)."""
    from .facenet_synth import SYNTH_PREFIX

    names = np.asarray([str(n) for n in data.get("source_names", ())])
    synth_ids = np.flatnonzero(np.char.startswith(names, SYNTH_PREFIX)) if len(names) else np.zeros(0, np.int64)
    is_synth = np.isin(data["source"][rows], synth_ids) if "source" in data else np.zeros(len(rows), bool)
    return rows[is_synth], rows[~is_synth]


def train(data: dict, model: FaceModel, corr, cfg: TrainConfig, run_dir: Path, device="cpu", resume: bool = False,
          val_idx: np.ndarray | None = None, log: Callable[[str], None] = print,
          init_from: Path | None = None) -> tuple[FaceNetModule, dict]:
    """Train on the cached ``data`` (rows not in ``val_idx``); checkpoints and ``log.csv`` in ``run_dir``.
    ``init_from``: a weights file (:func:`~.facenet.save_weights`'s ``.pt``, e.g. the shipped one) to start
    from, with a fresh optimiser and schedule (ignored when resuming a checkpoint).
    -> ``(net, summary)`` (summary: steps, seconds, last terms, held-out landmark error)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = FaceNetModule(model.sizes, expression_box=model.kind == "builtin").to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps)
                                                                                 / cfg.steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    step, wall = 0, 0.0
    ckpt = run_dir / "checkpoint.pt"
    if resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=device, weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        step, wall = st["step"], st["wall"]
        log(f"resumed at step {step}")
    elif init_from is not None:
        load_state(Path(init_from), net)           # checked: a bad file is one line naming it and the field
        log(f"initialised from {init_from}")
    mt = ModelTensors(model, corr, device, cfg.photo_stride)
    val_idx = np.asarray(val_idx if val_idx is not None else [], np.int64)
    train_idx = np.setdiff1d(np.arange(len(data["crop"])), val_idx)
    synth_idx, real_idx = split_synthetic(data, train_idx)
    n_synth = int(round(cfg.synth_share * cfg.batch)) if len(synth_idx) and len(real_idx) else 0
    csv_path = run_dir / "log.csv"
    fields = None
    last, val = {}, {}
    t_start = time.perf_counter() - wall
    net.train()
    while step < cfg.steps:
        if n_synth:
            idx = np.concatenate([real_idx[torch.randint(len(real_idx), (cfg.batch - n_synth,), generator=gen).numpy()],
                                  synth_idx[torch.randint(len(synth_idx), (n_synth,), generator=gen).numpy()]])
        else:       # real faces only (synthetic rows in the cache are not drawn at share 0)
            pool = real_idx if len(real_idx) else train_idx
            idx = pool[torch.randint(len(pool), (cfg.batch,), generator=gen).numpy()]
        batch = augment(data, idx, cfg, gen, device, net.input_size)
        if n_synth:
            batch["synthetic"] = torch.arange(cfg.batch, device=device) >= cfg.batch - n_synth
        terms = losses(net.split(net(batch["x"])), batch, mt, cfg, net.input_size)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        last = {"step": step, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()},
                "lr": sched.get_last_lr()[0], "seconds": round(time.perf_counter() - t_start, 1)}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if len(val_idx):
                val = {"val_landmark_pct": landmark_error(net, data, val_idx, mt, cfg, device, jitter=False),
                       "val_landmark_pct_jitter": landmark_error(net, data, val_idx, mt, cfg, device, jitter=True)}
            last.update(val)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()))
        if step % 50 == 0 or step == cfg.steps:
            if fields is None:
                fields = [k for k in last if not k.startswith("val_")] + ["val_landmark_pct", "val_landmark_pct_jitter"]
                if csv_path.is_file():                    # resumed with other terms: keep the old log aside
                    with open(csv_path, newline="") as fh:
                        if next(csv.reader(fh), None) != fields:
                            csv_path.replace(run_dir / f"log_until_{step}.csv")
            new = not csv_path.is_file()
            with open(csv_path, "a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(last)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "gen": gen.get_state(), "step": step, "wall": time.perf_counter() - t_start,
                        "config": asdict(cfg)}, tmp)
            tmp.replace(ckpt)
    if len(val_idx) and "val_landmark_pct" not in last:
        last.update({"step": step,
                     "val_landmark_pct": landmark_error(net, data, val_idx, mt, cfg, device, jitter=False),
                     "val_landmark_pct_jitter": landmark_error(net, data, val_idx, mt, cfg, device, jitter=True)})
    net.eval()
    summary = {"steps": step, "seconds": round(time.perf_counter() - t_start, 1), "last": last,
               "config": asdict(cfg), "train_faces": int(len(train_idx)), "val_faces": int(len(val_idx))}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return net, summary
