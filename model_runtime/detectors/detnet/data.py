"""Training samples for DetNet: teacher-labelled real frames, hand-only images, and batching.

A *sample* is ``(image_rgb uint8 (H, W, 3), labels)`` with labels in px of that image
(:data:`LABEL_SHAPES`); :func:`make_batch` warps samples into the square network input
(random crop/scale/rotation/flip, colour jitter) and stacks them into the tensors that
:func:`model_runtime.detectors.detnet.losses.detnet_loss` reads.

Sources (each optional):

* :class:`TeacherFrames`: the MediaPipe-labelled cache of :mod:`.teacher` (2D + MediaPipe's 3D;
  keypoints below confidence :data:`TEACHER_MIN_CONF` count as unlabelled);
* :class:`HandOnlyImages`: hand-graph-cnn crops (real 3D, left-hand chirality), pasted at a random
  size and place into an otherwise zero image (Fig. 6) with attention 0 and no body/face labels;
* :class:`PackedTeacher`: teacher frames packed by :func:`pack_teacher` into one ``.npz`` of square
  crops around the person with their labels, read with numpy alone (a GPU machine without OpenCV).
"""
from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import torch

from ...core.errors import InputMissingError, InputUnreadableError
from .config import BODY_FLIP, NUM_BODY, NUM_FACE_POINTS, NUM_HAND

TEACHER_MIN_CONF: Final[float] = 0.5
HANDGRAPH_TRAIN: Final[range] = range(0, 200)
"""hand-graph-cnn images used for training; 200-299 are kept for ``eval hand3d --start 200`` style checks."""

LABEL_SHAPES: Final[dict[str, tuple[int, ...]]] = {
    "body_2d": (NUM_BODY, 2), "body_vis": (NUM_BODY,), "body_3d": (NUM_BODY, 3), "body_has3d": (),
    "hand_2d": (2, NUM_HAND, 2), "hand_vis": (2, NUM_HAND), "hand_3d": (2, NUM_HAND, 3), "hand_has3d": (2,),
    "face_2d": (NUM_FACE_POINTS, 2), "face_vis": (NUM_FACE_POINTS,), "attention": (),
}


def empty_labels() -> dict[str, np.ndarray]:
    """All labels missing (every visibility 0, attention 1)."""
    lab = {k: np.zeros(s, np.float32) for k, s in LABEL_SHAPES.items()}
    lab["attention"] = np.float32(1.0)
    return lab


def teacher_labels(body_2d, body_3d, hands_2d, hands_3d, face_68) -> dict[str, np.ndarray]:
    """Labels from one MediaPipe detection (the fields of :class:`~model_runtime.detectors.base.Detection`:
    ``body_2d (24, 3)``, ``body_3d (24, 3)``, ``hands_2d (2, 21, 3)``, ``hands_3d (2, 21, 3)``, ``face_68 (68, 3)``
    = ``wholebody_2d[23:91]``); keypoints below :data:`TEACHER_MIN_CONF` are unlabelled."""
    lab = empty_labels()
    lab["body_2d"], lab["body_vis"] = body_2d[:, :2], (body_2d[:, 2] >= TEACHER_MIN_CONF).astype(np.float32)
    lab["body_3d"], lab["body_has3d"] = body_3d, np.float32(1.0)
    lab["hand_2d"], lab["hand_vis"] = hands_2d[..., :2], (hands_2d[..., 2] > 0).astype(np.float32)
    lab["hand_3d"] = hands_3d
    lab["hand_has3d"] = (hands_2d[..., 2].max(-1) > 0).astype(np.float32)
    lab["face_2d"], lab["face_vis"] = face_68[:, :2], (face_68[:, 2] > 0).astype(np.float32)
    return {k: np.asarray(v, np.float32) for k, v in lab.items()}


class TeacherFrames:
    """Frames of the teacher cache (``out/detnet/teacher``); ``len``, ``[i]`` -> sample."""

    def __init__(self, folder: Path):
        path = folder / "labels.npz"
        if not path.is_file():
            raise InputMissingError(f"{path}: teacher cache not found (make it: train detnet --make-teacher)")
        d = np.load(path)
        self.folder = folder
        self.arrays = {k: d[k] for k in ("body_2d", "body_3d", "hands_2d", "hands_3d", "face_68")}
        self.sources = d["source"]

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        import cv2

        path = self.folder / "images" / f"{i:06d}.jpg"
        img = cv2.imread(str(path))
        if img is None:
            raise InputUnreadableError(f"{path}: cannot read the cached frame")
        lab = teacher_labels(**{k: v[i] for k, v in self.arrays.items()})
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), lab


def load_handgraph(folder: Path, indices=HANDGRAPH_TRAIN) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """hand-graph-cnn crops: image paths, 2D ``(N, 21, 2)`` px of the 256 crop (projection of the GT
    with the crop intrinsics), 3D ``(N, 21, 3)`` metres wrist-relative (camera axes, left chirality)."""
    from scipy.io import loadmat

    for name in ("params.mat", "pose_gt.mat"):
        if not (folder / name).is_file():
            raise InputMissingError(f"{folder / name}: file not found")
    params, gt = loadmat(str(folder / "params.mat")), loadmat(str(folder / "pose_gt.mat"))
    paths = [folder / str(p).strip() for p in np.ravel(params["image_path"])]
    idx = [i for i in indices if i < len(paths)]
    pose = np.asarray(gt["pose_gt"], np.float64)[idx] / 100.0                      # cm -> m
    cam, bbox = np.asarray(params["cam_param"], np.float64)[idx], np.asarray(params["bbox"], np.float64)[idx]
    r = 256.0 / bbox[:, 2]
    fx, fy = cam[:, 0] * r, cam[:, 1] * r
    cx, cy = (cam[:, 2] - bbox[:, 0]) * r, (cam[:, 3] - bbox[:, 1]) * r
    uv = np.stack([fx[:, None] * pose[..., 0] / pose[..., 2] + cx[:, None],
                   fy[:, None] * pose[..., 1] / pose[..., 2] + cy[:, None]], -1)
    return [paths[i] for i in idx], uv.astype(np.float32), (pose - pose[:, :1]).astype(np.float32)


class HandOnlyImages:
    """hand-graph-cnn crops as left-hand samples with attention 0 (placement happens in :func:`make_batch`)."""

    def __init__(self, folder: Path, indices=HANDGRAPH_TRAIN):
        self.paths, self.uv, self.xyz = load_handgraph(folder, indices)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        import cv2

        img = cv2.imread(str(self.paths[i]))
        if img is None:
            raise InputUnreadableError(f"{self.paths[i]}: cannot read the image")
        lab = empty_labels()
        lab["attention"] = np.float32(0.0)
        lab["hand_2d"][0], lab["hand_vis"][0] = self.uv[i], 1.0
        lab["hand_3d"][0], lab["hand_has3d"][0] = self.xyz[i], 1.0
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), lab


def flip_labels(lab: dict[str, np.ndarray], width: float) -> dict[str, np.ndarray]:
    """Mirror a sample's labels for an image flipped left-right (``width`` px): x -> width - x, 3D x
    negated, left and right swapped (body keypoints, hands)."""
    out = dict(lab)
    for k2 in ("body_2d", "hand_2d", "face_2d"):
        out[k2] = lab[k2].copy()
        out[k2][..., 0] = width - out[k2][..., 0]
    out["body_3d"] = lab["body_3d"] * np.array([-1, 1, 1], np.float32)
    out["hand_3d"] = lab["hand_3d"] * np.array([-1, 1, 1], np.float32)
    for k in ("body_2d", "body_vis", "body_3d"):
        out[k] = out[k][BODY_FLIP]
    for k in ("hand_2d", "hand_vis", "hand_3d", "hand_has3d"):
        out[k] = out[k][::-1].copy()
    return out


def _labelled_points(lab) -> np.ndarray:
    pts = [lab["body_2d"][lab["body_vis"] > 0], lab["hand_2d"][lab["hand_vis"] > 0], lab["face_2d"][lab["face_vis"] > 0]]
    return np.concatenate(pts, 0)


def sample_transform(img_shape, lab, size: int, rng: np.random.Generator, augment: bool) -> np.ndarray:
    """``(2, 3)`` affine source px -> network px (corner-origin convention) for one sample.

    Hand-only samples (attention 0) are shrunk to a random 18-55 % of the input and placed at a
    random position (the zero-padding of Fig. 6); others are cropped around the labelled points
    (or, 30 % of the time and always without ``augment``, letterboxed whole).
    """
    h, w = img_shape[:2]
    hand_only = float(lab["attention"]) == 0.0
    pts = _labelled_points(lab)
    if hand_only:
        side_dst = size * (rng.uniform(0.18, 0.55) if augment else 0.4)
        s = side_dst / max(h, w)
        centre_src = np.array([w / 2, h / 2])
        centre_dst = rng.uniform(side_dst / 2, size - side_dst / 2, 2) if augment else np.array([size / 2] * 2)
    elif not augment or len(pts) < 2 or rng.random() < 0.3:
        s = size / max(h, w)
        centre_src, centre_dst = np.array([w / 2, h / 2]), np.array([size / 2] * 2)
        if augment:
            s *= rng.uniform(0.8, 1.1)
            centre_dst = centre_dst + rng.uniform(-0.1, 0.1, 2) * size
    else:
        lo, hi = pts.min(0), pts.max(0)
        extent = max(hi - lo) * rng.uniform(1.15, 1.8) + 8.0
        centre_src = (lo + hi) / 2 + rng.uniform(-0.12, 0.12, 2) * extent
        s, centre_dst = size / extent, np.array([size / 2] * 2)
    angle = np.deg2rad(rng.uniform(-25, 25)) if augment and rng.random() < 0.5 else 0.0
    c, sn = np.cos(angle) * s, np.sin(angle) * s
    A = np.array([[c, -sn], [sn, c]])
    return np.concatenate([A, (centre_dst - A @ centre_src)[:, None]], 1)


def warp_affine(img: np.ndarray, Mcv: np.ndarray, size: int) -> np.ndarray:
    """``cv2.warpAffine(img, Mcv, (size, size))`` (bilinear, zeros outside) of a uint8 ``(H, W, C)`` image
    with ``Mcv (2, 3)`` in OpenCV's centre-origin pixels: OpenCV where it is installed, else the same
    sampling with ``torch.nn.functional.grid_sample`` (a bare GPU machine has torch alone)."""
    from ...synth.postfx import opencv

    cv2 = opencv()
    if cv2 is not None:
        return cv2.warpAffine(img, Mcv, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    H, W = img.shape[:2]
    inv = np.linalg.inv(np.vstack([Mcv, [0, 0, 1]]))[:2]                  # output px -> source px
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    src = np.stack([xs, ys, np.ones_like(xs)], -1) @ inv.T                 # (size, size, 2)
    grid = np.stack([(2 * src[..., 0] + 1) / W - 1, (2 * src[..., 1] + 1) / H - 1], -1)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.grid_sample(x, torch.from_numpy(grid)[None].float(), mode="bilinear",
                                          padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def warp_sample(img: np.ndarray, lab: dict, M: np.ndarray, size: int) -> tuple[np.ndarray, dict]:
    """Apply the affine ``M`` (source px -> network px) to the image and its labels; 3D labels are
    rotated about the camera axis by the same in-plane angle."""
    T = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])       # corner-origin -> OpenCV centre-origin
    Mcv = (np.linalg.inv(T) @ np.vstack([M, [0, 0, 1]]) @ T)[:2]
    out_img = warp_affine(img, Mcv, size)
    out = dict(lab)
    for k in ("body_2d", "hand_2d", "face_2d"):
        out[k] = (lab[k] @ M[:, :2].T + M[:, 2]).astype(np.float32)
    R2 = M[:, :2] / np.sqrt(abs(np.linalg.det(M[:, :2])))
    R3 = np.eye(3)
    R3[:2, :2] = R2
    for k in ("body_3d", "hand_3d"):
        out[k] = (lab[k] @ R3.T).astype(np.float32)
    inside = lambda p: ((p >= 0) & (p < size)).all(-1)  # noqa: E731
    out["body_vis"] = lab["body_vis"] * inside(out["body_2d"])
    out["face_vis"] = lab["face_vis"] * inside(out["face_2d"])
    out["hand_vis"] = lab["hand_vis"] * inside(out["hand_2d"])
    return out_img, out


def make_batch(samples, size: int, rng: np.random.Generator, augment: bool = True,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Samples -> ``image (N, 3, size, size)`` float RGB in [0, 1] and the label tensors of
    :data:`LABEL_SHAPES` with a leading N, on ``device``."""
    imgs, labs = [], []
    for img, lab in samples:
        if augment and rng.random() < 0.5:
            img, lab = img[:, ::-1], flip_labels(lab, img.shape[1])
        M = sample_transform(img.shape, lab, size, rng, augment)
        im, lb = warp_sample(np.ascontiguousarray(img), lab, M, size)
        if augment:
            im = np.clip(im.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255)
        imgs.append(np.asarray(im, np.float32))
        labs.append(lb)
    image = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).div(255.0).to(device)
    labels = {k: torch.from_numpy(np.stack([np.asarray(lb[k], np.float32) for lb in labs])).to(device)
              for k in LABEL_SHAPES}
    return image, labels


#: a packed crop spans this many times the labelled points' extent (room for make_batch's 1.15-1.8 crops)
PACK_MARGIN: Final[float] = 1.9


def pack_teacher(frames: "TeacherFrames", out: Path, indices, held, size: int = 256) -> int:
    """Pack ``frames[i]`` for ``i`` in ``indices`` into ``out`` (compressed ``.npz``): ``image (N, size, size, 3)``
    uint8, a square crop around each frame's labelled points (:data:`PACK_MARGIN` times their extent), the
    labels of :data:`LABEL_SHAPES` in crop px, ``held (N,)`` bool (``held``: a set of indices kept for
    validation).  Frames with fewer than 2 labelled points are skipped; -> frames written."""
    imgs, labs, hold = [], [], []
    for i in indices:
        img, lab = frames[i]
        pts = _labelled_points(lab)
        if len(pts) < 2:
            continue
        lo, hi = pts.min(0), pts.max(0)
        s = size / (max(hi - lo) * PACK_MARGIN + 8.0)
        c = (lo + hi) / 2
        M = np.array([[s, 0.0, size / 2 - s * c[0]], [0.0, s, size / 2 - s * c[1]]])
        im, lb = warp_sample(np.ascontiguousarray(img), lab, M, size)
        imgs.append(im)
        labs.append(lb)
        hold.append(i in held)
    if not imgs:
        raise InputMissingError(f"{out}: no teacher frame with labelled points to pack")
    arrays = {k: np.stack([np.asarray(lb[k], np.float32) for lb in labs]) for k in LABEL_SHAPES}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, image=np.stack(imgs).astype(np.uint8), held=np.array(hold, bool), **arrays)
    return len(imgs)


class PackedTeacher:
    """The frames of a :func:`pack_teacher` file; ``len``, ``[i]`` -> sample; ``held`` ``(N,)`` bool.
    Raises :class:`~model_runtime.core.errors.ModelFileError` naming the file and field when it is
    missing or malformed."""

    def __init__(self, path: Path):
        from ...core.errors import ModelFileError
        from ...core.safe_npz import load_npz

        d = load_npz(Path(path), ["image", "held", *LABEL_SHAPES], what="packed teacher (.npz)")
        img = d["image"]
        if img.ndim != 4 or img.shape[3] != 3 or img.shape[1] != img.shape[2] or img.dtype != np.uint8:
            raise ModelFileError(str(path), "image", f"has shape {img.shape} {img.dtype}, expected (N, S, S, 3) uint8")
        for k, shape in LABEL_SHAPES.items():
            if d[k].shape != (len(img), *shape):
                raise ModelFileError(str(path), k, f"has shape {d[k].shape}, expected {(len(img), *shape)}")
        self.images, self.held = img, d["held"].astype(bool)
        self.labels = {k: d[k].astype(np.float32) for k in LABEL_SHAPES}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.images[i], {k: v[i] for k, v in self.labels.items()}
