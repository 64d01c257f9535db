"""FaceNet training data: face crops of real videos/images with MediaPipe landmarks and the fit as teacher.

:func:`build_cache` runs, once per source, the project's MediaPipe detector (video mode for
videos, still mode for images) and the capture's face stage (:class:`.stage.FaceFitStage`:
landmark tracker + closed-form albedo/lighting, the "fit" whose parameters FaceNet may
distil) and stores per face frame, under ``out_dir/<source>.npz`` (never in the repository:
the material is research-licensed):

* ``crop (F, C, C, 3)`` uint8 BGR: the square region :data:`STORE_SCALE` x the face box's
  longer side around the box centre, at ``C`` = :data:`STORE_SIZE` px (augmented crops for the
  network are cut from it at training time: box jitter, scale, roll);
* ``landmarks (F, 468, 2)`` MediaPipe's landmarks in stored-crop px, ``mask (F, C, C)`` uint8
  skin mask (face oval minus eyes, brows, lips: the fit's photometric mask);
* ``A (F, 2, 3)`` image px -> stored-crop px, ``K (F, 3, 3)`` the image camera
  (:func:`.render.intrinsics`, 30 deg across the longer side);
* teacher: ``rotation (F, 3, 3)``, ``translation (F, 3)`` (image camera), ``expression``,
  ``identity``, ``albedo``, ``sh (F, 27)``, ``teacher_error_px (F,)``.

Sources already cached are skipped (the command resumes).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Final

import numpy as np

STORE_SIZE: Final[int] = 160
STORE_SCALE: Final[float] = 2.0
MIN_FACE_PX: Final[float] = 40.0         # faces whose box is smaller (longer side) are skipped
VIDEO_EXT: Final[tuple[str, ...]] = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_EXT: Final[tuple[str, ...]] = (".jpg", ".jpeg", ".png")
#: never trained on: the AFLW2000 evaluation images (PRNet, 3DDFA) and sets derived from AFLW,
#: the hand-only sets (no faces)
EXCLUDE_PARTS: Final[tuple[str, ...]] = ("PRNet", "3DDFA", "derived", "/aflw/", "300wlp", "hand-graph-cnn",
                                         "freihand", "onehand10k", "interhand2.6m", "/rhd/", "panoptic",
                                         "BF_IUV_gt", "/PIXIE/TestSamples/hand")


@dataclass(frozen=True)
class Source:
    """One training source: a video or a folder-less list of still images, named for its cache file."""

    name: str
    paths: tuple[Path, ...]
    video: bool


def find_sources(root: Path) -> list[Source]:
    """Every video (one source each) and the still images (one source per folder) under ``root``,
    minus :data:`EXCLUDE_PARTS`; sorted, so the list is reproducible."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXT + IMAGE_EXT)
    files = [p for p in files if not any(x in "/" + str(p.relative_to(root)) + "/" for x in EXCLUDE_PARTS)]
    out, folders = [], {}
    for p in files:
        rel = p.relative_to(root)
        if p.suffix.lower() in VIDEO_EXT:
            out.append(Source("video_" + "_".join(rel.with_suffix("").parts), (p,), True))
        else:
            folders.setdefault(rel.parent, []).append(p)
    for folder, ps in sorted(folders.items()):
        out.append(Source("images_" + "_".join(folder.parts), tuple(ps), False))
    return out


def _frames(src: Source, max_frames: int):
    """(image_bgr, timestamp_ms | None) for a source (videos decoded by :mod:`capture.sources`)."""
    import cv2

    if src.video:
        from ..capture.sources import open_source

        with open_source(str(src.paths[0]), 0, max_frames or None) as s:
            for fr in s:
                yield fr.image, int(round(fr.time * 1000))
    else:
        for p in src.paths[:max_frames or None]:
            img = cv2.imread(str(p))
            if img is not None:
                yield img, None


def cache_source(src: Source, detector, stage, max_frames: int = 0) -> dict[str, np.ndarray] | None:
    """Detect, track and crop every frame of ``src`` -> the arrays of the module docstring (None: no face)."""
    from .facenet import crop_affine, crop_box, cut_crops
    from .fit import skin_mask
    from .render import intrinsics

    rows: dict[str, list] = {k: [] for k in ("crop", "landmarks", "mask", "A", "K", "rotation", "translation",
                                             "expression", "identity", "albedo", "sh", "teacher_error_px",
                                             "frame")}
    detector.reset()
    last_shape = None
    for i, (img, ts) in enumerate(_frames(src, max_frames)):
        H, W = img.shape[:2]
        K = intrinsics(W, H)
        if not src.video or last_shape != (H, W):
            stage.reset(K)                              # still images: every image is its own "clip"
            last_shape = (H, W)
        det = detector.detect(img, ts)
        lm, box = det.face_landmarks, det.face_box
        if lm is None or box is None or not np.isfinite(lm).all() or max(box[2], box[3]) < MIN_FACE_PX:
            continue
        tracked = stage.track(img, det)
        if tracked is None:
            continue
        _, seed = tracked
        stage.fit_appearance(img, det, seed)
        ident, albedo = stage.clip_params()
        tr = seed[0]
        A = crop_affine(crop_box(box[None], STORE_SCALE), STORE_SIZE)[0]
        lm_c = lm[:, :2] @ A[:, :2].T + A[:, 2]
        rows["crop"].append(cut_crops(img, A[None], STORE_SIZE)[0])
        rows["landmarks"].append(lm_c.astype(np.float32))
        rows["mask"].append(skin_mask(lm_c, STORE_SIZE, STORE_SIZE))      # the fit's photometric mask
        rows["A"].append(A.astype(np.float32))
        rows["K"].append(K.astype(np.float32))
        rows["rotation"].append(tr.rotation.astype(np.float32))
        rows["translation"].append(tr.translation.astype(np.float32))
        rows["expression"].append(tr.expression.astype(np.float32))
        rows["identity"].append(ident.astype(np.float32))
        rows["albedo"].append(albedo.astype(np.float32))
        rows["sh"].append(stage.current_sh().astype(np.float32))
        rows["teacher_error_px"].append(np.float32(tr.landmark_error_px))
        rows["frame"].append(i)
    if not rows["crop"]:
        return None
    return {k: np.stack(v) for k, v in rows.items()}


def build_cache(root: Path, out_dir: Path, face_model, max_frames: int = 0,
                log: Callable[[str], None] = print) -> dict:
    """Cache every source under ``root`` into ``out_dir`` (skipping those already there) and write
    ``out_dir/summary.json`` (per source: faces, frames seen, seconds) -> that summary."""
    from ..detectors import make_detector
    from .correspondence import model_signature
    from .fit import FaceFitter
    from .stage import FaceFitStage

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"sources": {}}
    summary["face_model"] = face_model.kind
    summary["face_model_signature"] = model_signature(face_model)
    stage = detector = None          # made for the first source to cache: a machine that only trains on a
    try:                             # carried cache (a GPU without MediaPipe or the data) never needs them
        for src in (find_sources(root) if Path(root).is_dir() else []):
            path = out_dir / f"{src.name}.npz"
            if path.is_file() or summary["sources"].get(src.name, {}).get("faces") == 0:
                continue                                # cached, or known to hold no usable face
            if detector is None:
                stage, detector = FaceFitStage(FaceFitter(face_model)), make_detector("mediapipe")
            t0 = time.perf_counter()
            arrays = cache_source(src, detector, stage, max_frames)
            n = 0 if arrays is None else len(arrays["crop"])
            if arrays is not None:
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, **arrays)
                tmp.replace(path)
            summary["sources"][src.name] = {"faces": n, "files": [str(p.relative_to(root)) for p in src.paths][:3],
                                            "seconds": round(time.perf_counter() - t0, 1)}
            summary_path.write_text(json.dumps(summary, indent=1))
            log(f"{src.name}: {n} faces ({time.perf_counter() - t0:.0f} s)")
    finally:
        if detector is not None:
            detector.close()
    return summary


def load_cache(out_dir: Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """All cached sources of ``out_dir`` (or only ``names``) concatenated, plus ``source (F,)`` int ids
    and ``source_names``."""
    files = sorted(p for p in Path(out_dir).glob("*.npz") if not p.name.endswith(".tmp.npz"))
    if names is not None:
        files = [p for p in files if p.stem in names]
    if not files:
        from ..core.errors import InputMissingError

        raise InputMissingError(f"{out_dir}: no cached FaceNet data; run 'python -m model_runtime train facenet "
                                "--cache-only' first")
    parts = [dict(np.load(p)) for p in files]
    keys = [k for k in parts[0] if all(k in p for p in parts)]     # extras of one source (synth: yaw_deg) dropped
    out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    out["source"] = np.concatenate([np.full(len(p["crop"]), i) for i, p in enumerate(parts)])
    out["source_names"] = np.array([p.stem for p in files])
    return out


def subset_cache(cache_dir: Path, out_dir: Path, faces: int, holdout=(), held_max: int = 60) -> int:
    """Copy about ``faces`` training faces of the cache ``cache_dir`` into ``out_dir``: each source keeps
    its share, evenly spread over its frames (at least one); the ``holdout`` sources keep at most
    ``held_max`` each (the landmark check); ``summary.json`` is copied.  A cache small enough to carry to
    a GPU machine, which trains on it without MediaPipe or the data; -> faces written."""
    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    files = sorted(p for p in cache_dir.glob("*.npz") if not p.name.endswith(".tmp.npz"))
    if not files:
        from ..core.errors import InputMissingError

        raise InputMissingError(f"{cache_dir}: no cached FaceNet data to subset")
    sizes = {p: int(np.load(p)["crop"].shape[0]) for p in files}
    train_total = sum(n for p, n in sizes.items() if p.stem not in holdout)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for p, n in sizes.items():
        want = min(n, held_max) if p.stem in holdout else max(1, round(n * faces / max(train_total, 1)))
        rows = np.unique(np.linspace(0, n - 1, min(want, n)).round().astype(int))
        data = dict(np.load(p))
        np.savez_compressed(out_dir / p.name, **{k: (v[rows] if v.ndim and len(v) == n else v) for k, v in data.items()})
        written += len(rows)
    if (cache_dir / "summary.json").is_file():
        (out_dir / "summary.json").write_text((cache_dir / "summary.json").read_text())
    return written


def select_rows(data: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The cache ``data`` (:func:`load_cache`) with only the face rows ``keep (F,)`` bool."""
    n = len(data["crop"])
    return {k: (v[keep] if k != "source_names" and len(v) == n else v) for k, v in data.items()}

