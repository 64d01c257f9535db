"""``python -m model_runtime eval aflw2000 --dir DIR [--json]``: face landmark NME on AFLW2000-3D.

For every ``imageNNNNN.jpg`` in DIR with its ``.mat`` (``pt3d_68`` 3x68, ``Pose_Para``):
detect (``--detector``), estimate the 3DMM with ``--face``: ``fit`` (:class:`face.fit.FaceFitter`,
single-image mode), ``net`` (:class:`face.facenet.FaceNet` on the detection's face box), ``net+fit``
(FaceNet's pose, expression and identity as the start of the capture's landmark fit,
:class:`face.tracker.FaceTracker` with the identity free, run to convergence) or ``track`` (that landmark
fit from a similarity pose and the mean face, for reference), and read the 68 landmarks off the mesh.
``ms_per_face``: the face step alone (detection excluded); ``net_ms_per_face`` (net modes): FaceNet alone
(crop + network + pose), median over the images of the median over ``--timing-repeats`` runs, wall clock;
``net_cpu_ms_per_face``: the same as CPU time of the calling thread (torch runs on it with one thread; what
the other processes of a loaded machine take is not counted).  ``--facenet-compare`` also runs the plain
module (:class:`~model_runtime.face.facenet.FaceNet` with ``optimise=False``) right after every timed call:
``plain_net_cpu_ms_per_face`` and ``net_cpu_ratio`` (median over faces of fast / plain), a ratio that
the machine's load affects far less than either time.  ``nme``: the standard AFLW2000-3D NME (3DDFA, PRNet):
mean 2D point error over the 68 points divided by ``sqrt(w * h)`` of the ground-truth landmark box, in %,
averaged over the images (``nme_median``: the median over images; ``nme_interocular``: divided by the
outer eye-corner distance instead, 300W's normaliser, for comparison only).  Reported overall, per iBUG
group (``by_group``: jaw, brows, nose, eyes, mouth), per image (``per_image``), per absolute
yaw bin [0,30], [30,60], [60,90] degrees, against the original fits (``pt3d_68``) and,
when 3DDFA's re-annotated arrays are found (``--reannotated``/``--index-map`` or the
research-data layout next to DIR), against the manual re-annotation too.  MediaPipe's own
68 points (standard 468->68 map) are scored the same way as a peer.  Images where the
detector finds no face count in ``failed`` and are left out of the means.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError, ModelFileError

YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))


def add_arguments(parser) -> None:
    from ..detectors import add_detector_arguments

    parser.add_argument("--dir", required=True, type=Path, help="folder of AFLW2000 imageNNNNN.jpg + .mat")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--face-model", default="builtin", help="'builtin' or a BFM .mat file")
    parser.add_argument("--reannotated", type=Path, default=None,
                        help="3DDFA AFLW2000-3D-Reannotated.pts68.npy (default: found next to DIR if present)")
    parser.add_argument("--index-map", type=Path, default=None,
                        help="derived/aflw2000_index_map.json (default: found next to DIR if present)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    parser.add_argument("--face", choices=("fit", "net", "net+fit", "track"), default="fit",
                        help="3DMM fit (default), FaceNet, FaceNet as the start of the landmark fit, or that "
                             "landmark fit from a similarity pose (track)")
    parser.add_argument("--timing-repeats", type=int, default=1,
                        help="run FaceNet N times per face and report the median as net_ms_per_face (default 1)")
    parser.add_argument("--facenet-plain", action="store_true",
                        help="run FaceNet as the plain module (no channels-last trace), to compare its speed")
    parser.add_argument("--facenet-compare", action="store_true",
                        help="also time the plain module, interleaved call by call with the fast one "
                             "(plain_net_cpu_ms_per_face, net_cpu_ratio)")
    parser.add_argument("--facenet-weights", type=Path, default=None,
                        help="FaceNet .pt (default: the shipped weights of the face model)")
    parser.add_argument("--facenet-profile", default=None,
                        help="FaceNet's profile expert .pt, or 'none' (default: <weights stem>_profile.pt beside "
                             "the weights, when there is one)")
    parser.add_argument("--no-face-check", action="store_true",
                        help="mediapipe: keep Holistic's face even where it disagrees with the pose (the detector's "
                             "face check off; for comparison)")
    add_detector_arguments(parser)


#: iBUG-68 landmark groups (0-based index ranges) for the per-group NME
IBUG68_GROUPS: dict[str, tuple[int, int]] = {"jaw": (0, 17), "brows": (17, 27), "nose": (27, 36),
                                             "eyes": (36, 48), "mouth": (48, 68)}


def box_size(gt: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` ground truth -> ``(...,)`` the standard normaliser ``sqrt(w h)`` of its landmark box, px."""
    wh = gt.max(-2) - gt.min(-2)
    return np.sqrt(np.maximum(wh[..., 0] * wh[..., 1], 1e-9))


def interocular(gt: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` -> ``(...,)`` outer eye-corner distance (iBUG 36-45), px (300W's normaliser)."""
    return np.maximum(np.linalg.norm(gt[..., 36, :] - gt[..., 45, :], axis=-1), 1e-9)


def point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` predictions and ground truth -> ``(..., 68)`` per-point errors in % of :func:`box_size`."""
    return np.linalg.norm(pred - gt, axis=-1) / box_size(gt)[..., None] * 100.0


def nme_percent(pred: np.ndarray, gt: np.ndarray) -> float:
    """Standard AFLW2000-3D NME (3DDFA, PRNet) of ``(68, 2)`` predictions vs ground truth: mean 2D point error
    divided by ``sqrt(w h)`` of the ground-truth landmark box, in %."""
    return float(point_errors(pred, gt).mean())


def group_nme(errors: np.ndarray) -> dict[str, float]:
    """``(N, 68)`` per-point errors (%) -> mean per iBUG group (:data:`IBUG68_GROUPS`)."""
    e = np.asarray(errors, np.float64).reshape(-1, 68)
    return {k: float(e[:, a:b].mean()) if len(e) else float("nan") for k, (a, b) in IBUG68_GROUPS.items()}


def read_annotation(mat_path: Path) -> tuple[np.ndarray, float]:
    """``(68, 2)`` GT px from ``pt3d_68`` and the absolute yaw in degrees from ``Pose_Para``."""
    from scipy.io import loadmat

    try:
        m = loadmat(str(mat_path))
    except Exception as e:
        raise InputUnreadableError(f"{mat_path}: cannot read ({e})") from e
    for key in ("pt3d_68", "Pose_Para"):
        if key not in m:
            raise ModelFileError(mat_path, key, "is missing")
    pts = np.asarray(m["pt3d_68"], np.float64)
    if pts.shape != (3, 68):
        raise ModelFileError(mat_path, "pt3d_68", f"has shape {pts.shape}, expected (3, 68)")
    yaw = abs(float(np.degrees(np.asarray(m["Pose_Para"], np.float64).ravel()[1])))
    return pts[:2].T, yaw


def _find_reannotated(dirpath: Path, reann: Path | None, index_map: Path | None):
    """``(arrays (2000, 2, 68), {stem: row})`` or None when not available."""
    if reann is None or index_map is None:
        for parent in dirpath.resolve().parents:
            cand = parent / "3DDFA" / "test.configs" / "AFLW2000-3D-Reannotated.pts68.npy"
            cmap = parent / "derived" / "aflw2000_index_map.json"
            if cand.is_file() and cmap.is_file():
                reann, index_map = reann or cand, index_map or cmap
                break
    if reann is None or index_map is None or not reann.is_file() or not index_map.is_file():
        return None
    with open(index_map) as fh:
        return np.load(reann), {k: int(v) for k, v in json.load(fh)["index"].items()}


def _summary(errors: list[np.ndarray], yaws: list[float], interocular_errors: list[float]) -> dict:
    """Per-image ``(68,)`` point errors (% of the box size), yaws (deg) and inter-ocular NMEs -> the summary:
    ``nme`` (standard, mean over images), ``nme_median``, ``nme_interocular``, ``by_yaw``, ``by_group``."""
    pts = np.asarray(errors, np.float64).reshape(-1, 68)
    e, y = pts.mean(1), np.asarray(yaws)
    out = {"nme": float(e.mean()) if len(e) else float("nan"),
           "nme_median": float(np.median(e)) if len(e) else float("nan"),
           "nme_interocular": float(np.mean(interocular_errors)) if len(e) else float("nan"),
           "by_yaw": {}, "by_group": group_nme(pts)}
    for lo, hi in YAW_BINS:
        sel = (y >= lo) & (y <= hi) if lo == 0 else (y > lo) & (y <= hi)
        out["by_yaw"][f"{int(lo)}-{int(hi)}"] = {"nme": float(e[sel].mean()) if sel.any() else None,
                                                "images": int(sel.sum())}
    return out


class _Params:
    """identity ``(1, Ki)`` and expression ``(1, Ke)`` as :meth:`FaceEstimator._points68` reads them."""

    def __init__(self, identity, expression):
        self.identity, self.expression = identity, expression


class FaceEstimator:
    """One image's 68 points by ``mode`` (``fit``, ``net``, ``net+fit``, ``track``): ``__call__(image, landmarks (468, 3),
    face_box (4,)) -> (68, 2)`` px or None when it failed."""

    def __init__(self, mode: str, fitter, facenet=None):
        from ..face.correspondence import MP468_TO_IBUG68

        from ..face.tracker import FaceTracker, FaceTrackerConfig

        self.mode, self.fitter, self.net = mode, fitter, facenet
        self.repeats, self.net_ms, self.net_cpu_ms, self.extra_s = 1, [], [], 0.0
        self.plain, self.plain_cpu_ms = None, []          # --facenet-compare: the plain module, interleaved
        # net+fit / track: the capture's landmark fit (LM, identity free) run to convergence from FaceNet's
        # start (net+fit) or from a similarity pose and the mean face (track)
        self.tracker = FaceTracker(fitter.model, correspondence=fitter.corr, expression_range=fitter.expression_range,
                                   config=FaceTrackerConfig(iterations=FaceTrackerConfig.init_iterations))
        m = fitter.model
        lm68 = np.asarray(m.landmarks68)
        # the fitter's "auto" 68 points: the model's ids for a BFM model with all 68, else the correspondence
        self._ids = lm68 if m.kind == "bfm" and (lm68 >= 0).all() else None
        self._mp68 = np.asarray(MP468_TO_IBUG68)

    def _net(self, image, face_box):
        from ..face.render import intrinsics

        H, W = image.shape[:2]
        K = intrinsics(W, H, self.fitter.focal_px)
        box = np.asarray(face_box, np.float64)[None]
        times, cpu, plain_cpu = [], [], []
        loop0 = time.perf_counter()
        for _ in range(max(1, self.repeats)):              # FaceNet alone: crop + network + pose
            t0, c0 = time.perf_counter(), time.thread_time()
            pred, R, t = self.net.predict(image, box, K)
            times.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            if self.plain is not None:                     # the same call on the plain module, right after
                t0, c0 = time.perf_counter(), time.thread_time()
                self.plain.predict(image, box, K)
                plain_cpu.append(time.thread_time() - c0)
                times.append(time.perf_counter() - t0)
        self.net_ms.append(1000.0 * float(np.median(times[::2] if self.plain is not None else times)))
        self.net_cpu_ms.append(1000.0 * float(np.median(cpu)))
        if plain_cpu:
            self.plain_cpu_ms.append(1000.0 * float(np.median(plain_cpu)))
        # the timing repeats (and the plain module's calls) are not part of ms_per_face: all but the first call
        self.extra_s += (time.perf_counter() - loop0) - times[0]
        return pred, R[0], t[0], K

    def _points68(self, pred, R, t, K) -> np.ndarray:
        from ..face.render import project
        from ..models.face_model import face_geometry

        m = self.fitter.model
        verts = face_geometry(m.mean_shape, m.id_basis, m.exp_basis, pred.identity[:1], pred.expression[:1])[0]
        px = project(verts @ R.T + t, K)
        if self._ids is not None:
            return px[self._ids]
        return self.fitter.corr.points(px[None])[0][self._mp68]

    def __call__(self, image, landmarks, face_box):
        from ..face.render import intrinsics
        from ..face.tracker import FaceTrack

        if self.mode == "fit":
            res = self.fitter.fit(image, landmarks, face_box)
            return res.landmarks68_px if res.ok else None
        size = float(np.sqrt(face_box[2] * face_box[3]))
        if self.mode == "track":
            K = intrinsics(image.shape[1], image.shape[0], self.fitter.focal_px)
            ident = np.zeros(self.fitter.sizes["identity"])
            tr = self.tracker.track(landmarks, K, ident, None, face_size=size, fit_identity=True)
        else:
            pred, R, t, K = self._net(image, face_box)
            if self.mode == "net":
                return self._points68(pred, R, t, K)
            seed = FaceTrack(rotation=R.astype(np.float64), translation=t.astype(np.float64),
                             expression=pred.expression[0].astype(np.float64),
                             identity=pred.identity[0].astype(np.float64), landmark_error_px=float("nan"), iterations=0)
            tr = self.tracker.track(landmarks, K, seed.identity, seed, face_size=size, fit_identity=True)
        return self._points68(_Params(tr.identity[None], tr.expression[None]), tr.rotation, tr.translation, K)


def evaluate(dirpath: Path, detector, fitter, limit: int = 0, reannotated=None) -> dict:
    """Score ``fitter`` (a :class:`FaceEstimator`, or a :class:`face.fit.FaceFitter` used as ``fit``) on the
    images of ``dirpath`` -> the JSON dict of the module docstring."""
    import cv2

    from ..face.correspondence import MP468_TO_IBUG68

    images = sorted(p for p in dirpath.glob("image*.jpg") if p.with_suffix(".mat").is_file())
    if limit:
        images = images[:limit]
    if not images:
        raise InputMissingError(f"{dirpath}: no imageNNNNN.jpg with a .mat next to it")
    if not isinstance(fitter, FaceEstimator):
        fitter = FaceEstimator("fit", fitter)
    fit_err, mp_err, fit_io, mp_io, yaws, re_fit, re_mp, failed, per_image = [], [], [], [], [], [], [], [], []
    t_fit = 0.0
    for path in images:
        img = cv2.imread(str(path))
        if img is None:
            raise InputUnreadableError(f"{path}: cannot decode image")
        gt, yaw = read_annotation(path.with_suffix(".mat"))
        det = detector.detect(img)
        if det.face_landmarks is None:
            failed.append(path.name)
            continue
        t0 = time.perf_counter()
        pred68 = fitter(img, det.face_landmarks, det.face_box)
        t_fit += time.perf_counter() - t0
        if pred68 is None:
            failed.append(path.name)
            continue
        mp68 = det.face_landmarks[MP468_TO_IBUG68, :2]
        fit_err.append(point_errors(pred68, gt))
        mp_err.append(point_errors(mp68, gt))
        io = interocular(gt)
        fit_io.append(float(np.linalg.norm(pred68 - gt, axis=-1).mean() / io * 100.0))
        mp_io.append(float(np.linalg.norm(mp68 - gt, axis=-1).mean() / io * 100.0))
        yaws.append(yaw)
        per_image.append({"image": path.name, "yaw": yaw, "nme": float(fit_err[-1].mean()),
                          "mediapipe68": float(mp_err[-1].mean()), "box_px": float(box_size(gt)),
                          "by_group": group_nme(fit_err[-1]), "face_source": det.extras.get("face_source")})
        if reannotated is not None and path.stem in reannotated[1]:
            gt2 = reannotated[0][reannotated[1][path.stem]].T
            re_fit.append(nme_percent(pred68, gt2))
            re_mp.append(nme_percent(mp68, gt2))
    t_fit -= fitter.extra_s
    out = {"images": len(fit_err), "failed": len(failed), "failed_images": failed,
           **_summary(fit_err, yaws, fit_io), "mediapipe68": _summary(mp_err, yaws, mp_io),
           "ms_per_face": 1000.0 * t_fit / max(1, len(fit_err)),
           "fit_ms_per_image": 1000.0 * t_fit / max(1, len(fit_err))}
    if fitter.net_ms:
        out["net_ms_per_face"] = float(np.median(fitter.net_ms))
        out["net_cpu_ms_per_face"] = float(np.median(fitter.net_cpu_ms))
    if fitter.plain_cpu_ms:
        out["plain_net_cpu_ms_per_face"] = float(np.median(fitter.plain_cpu_ms))
        out["net_cpu_ratio"] = float(np.median(np.asarray(fitter.net_cpu_ms) / np.asarray(fitter.plain_cpu_ms)))
    out["per_image"] = per_image
    if re_fit:
        out["reannotated"] = {"fit": float(np.mean(re_fit)), "mediapipe68": float(np.mean(re_mp)),
                              "images": len(re_fit)}
    return out


def run(args) -> int:
    from ..models.load import load_face_model
    from ..detectors import detector_from_options
    from ..face.fit import FaceFitter

    if not args.dir.is_dir():
        raise InputMissingError(f"{args.dir}: no such folder")
    from ..core.options import resolve_device

    args.device = resolve_device(args.device)
    if args.device == "cpu":
        import torch

        # small per-image problems: one intra-op thread is fastest, and it leaves a core
        # to MediaPipe (two threads ran ~25x slower on the shared 2-core machine)
        torch.set_num_threads(1)
        from ..core.blas import limit_numpy_blas_threads

        limit_numpy_blas_threads(1)       # the LM tracker's small products (net+fit, track): no BLAS pool
    face_model = load_face_model(args.face_model)
    fitter = FaceFitter(face_model, device=args.device)
    net = None
    if args.face in ("net", "net+fit"):
        from ..face.facenet import FaceNet

        net = FaceNet(face_model, device=args.device, weights=args.facenet_weights, optimise=not args.facenet_plain,
                      profile=args.facenet_profile)
    detector = detector_from_options(args)
    if args.no_face_check and hasattr(detector, "face_check"):
        detector.face_check = False
    try:
        est = FaceEstimator(args.face, fitter, net)
        est.repeats = max(1, args.timing_repeats)
        if net is not None and args.facenet_compare:
            est.plain = FaceNet(face_model, device=args.device, weights=args.facenet_weights, optimise=False,
                                profile=args.facenet_profile)
        out = evaluate(args.dir, detector, est, args.limit,
                       _find_reannotated(args.dir, args.reannotated, args.index_map))
        out["face"] = args.face
        out["face_check"] = bool(getattr(detector, "face_check", False))
    finally:
        detector.close()
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"AFLW2000-3D: {out['images']} images ({out['failed']} without a detected face)")
    print(f"  NME (--face {args.face:7s}) {out['nme']:.2f} %   MediaPipe 68: {out['mediapipe68']['nme']:.2f} %")
    for k, v in out["by_yaw"].items():
        mp = out["mediapipe68"]["by_yaw"][k]["nme"]
        if v["nme"] is not None:
            print(f"  yaw {k:>6}: {v['nme']:.2f} % (MediaPipe {mp:.2f} %), {v['images']} images")
    for k, v in out["by_group"].items():
        print(f"  {k:>6}:     {v:.2f} % (MediaPipe {out['mediapipe68']['by_group'][k]:.2f} %)")
    if "reannotated" in out:
        r = out["reannotated"]
        print(f"  re-annotated GT:    {r['fit']:.2f} %   MediaPipe 68: {r['mediapipe68']:.2f} %")
    print(f"  face time {out['ms_per_face']:.1f} ms/face (detection excluded)")
    if "net_ms_per_face" in out:
        print(f"  FaceNet alone (crop + network + pose) {out['net_ms_per_face']:.2f} ms/face (median; CPU time "
              f"of the thread {out['net_cpu_ms_per_face']:.2f} ms)")
    if "net_cpu_ratio" in out:
        print(f"  plain module, interleaved: {out['plain_net_cpu_ms_per_face']:.2f} ms CPU/face; "
              f"fast / plain {out['net_cpu_ratio']:.2f}")
    return 0
