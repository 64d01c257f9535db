"""The feet stage of a capture (issue 10, item 4): :class:`FootStage` runs the pure functions of
:mod:`.feet` (contact labels, ground plane, leg locks, root depth; their settings are that module's
constants, read when used so that ``tools/replay_feet.py --set`` can change them) on a clip's
records in file order.  Offline it does not hold frames: it hands each record on at once (unlocked,
provisional contact labels) and changes it in place when it decides it, ~3.5 s later; the capture
rewrites those frames in its file (:meth:`FootStage.take_revised`,
:meth:`~model_runtime.core.capture_file.CaptureWriter.rewrite`), so a kill loses no more than
without the stage (docs/reliability.md)."""
from __future__ import annotations

import math
from collections import deque
from typing import Callable

import numpy as np

from ..core.lbs import forward_kinematics_rt
from ..core.rotations import matrix_to_quat_wxyz, quat_wxyz_to_matrix
from . import feet as F


class _Rows:
    """Per-frame values of a clip in one growing array (capacity doubled when full): ``extend``
    adds ``(n, *shape)`` rows, ``a`` is the ``(len, *shape)`` view of those added."""

    def __init__(self, shape: tuple, dtype=np.float64):
        self._buf = np.zeros((256, *shape), dtype)
        self.n = 0

    def extend(self, rows: np.ndarray) -> None:
        m = len(rows)
        if self.n + m > len(self._buf):
            grown = np.zeros((max(2 * len(self._buf), self.n + m), *self._buf.shape[1:]), self._buf.dtype)
            grown[:self.n] = self._buf[:self.n]
            self._buf = grown
        self._buf[self.n:self.n + m] = rows
        self.n += m

    @property
    def a(self) -> np.ndarray:
        return self._buf[:self.n]


class FootStage:
    """Contact labels, ground plane, foot locking and root depth of one clip's records
    (:meth:`push` in file order, :meth:`flush` at the end).

    Offline (``lookahead``), :meth:`push` hands every record on at once, with provisional contact
    labels (those known so far: the plane and the frames around it), so that the capture writes it
    chunk by chunk as before; the stage keeps the records of the last seconds and decides them
    later, in blocks of at least :data:`.feet.LOCK_BLOCK` frames, once the plane is known (at most
    :data:`.feet.PLANE_HOLD_S`) and ``need`` frames of labels after them (~3.5 s at 30 fps) fix the
    locks' targets, the blends before a span and the root's interpolation across flights and its
    smoothing.  The records it then changes (final labels, locked legs, root depth, and the gap
    frames filled from them: :attr:`refill_gap`) are changed in place and listed by
    :meth:`take_revised`, for the writer to rewrite (:meth:`CaptureWriter.rewrite`).  :meth:`flush`
    (the clip's end, a cancel) decides everything still open and returns nothing new.
    Live, the same rules run with what has arrived, before the records are handed on: contacts
    causally, the lock on exactly the contact frames (its target the mean of the span's frames so
    far within the window), the root correction neither interpolated nor smoothed.
    Sets ``rec.foot_contact (2,)``, and on locked frames ``rec.quat``, ``rec.transl``,
    ``rec.joints``.  ``plane`` is the current ground plane ``(4,)`` or None.

    Args:
        rest_joints: ``betas`` -> rest joints ``(52, 3)``; parents: ``(52,)``.
        K: ``() -> (3, 3)`` the clip's current intrinsics; fps: frames per second.
        ankle_height: ``betas`` -> the rest ankle height above the soles (m, unscaled).
        lookahead: offline (decide with later frames) or live.
        up: ``() -> (3,) or None``: the scene's vertical in the camera frame, measured or from its horizon
            (:meth:`.align_clip.ClipAlignment.scene_up`), the ground plane's prior
            (:func:`.feet.fit_ground_plane`); None: camera ``-y``, weakly.
    """

    def __init__(self, rest_joints: Callable[[np.ndarray], np.ndarray], parents: np.ndarray,
                 K: Callable[[], np.ndarray], fps: float, ankle_height: Callable[[np.ndarray], float],
                 lookahead: bool = True, up: Callable[[], np.ndarray | None] | None = None):
        self.rest_joints, self.parents, self.K, self.fps = rest_joints, parents, K, float(fps)
        self.up = up
        self.ankle_height = ankle_height
        self.live = not lookahead
        self.blend = max(F.BLEND_MIN_FRAMES, round(F.BLEND_S * fps))
        self.half_window = max(1, round(F.LOCK_HALF_WINDOW_S * fps))
        self.depth_window = max(self.half_window, round(F.LOCK_DEPTH_HALF_WINDOW_S * fps))
        self.speed_half = max(1, round(F.SPEED_HALF_S * fps))
        self.max_gap = max(1, round(F.MAX_GAP_S * fps)) if lookahead else 0
        self.root_sigma = F.ROOT_SMOOTH_S * fps if lookahead else 0.0
        # frames of labels after a frame (and before it) that its plan depends on
        self.need = (self.max_gap + self.blend + self.depth_window + math.ceil(4 * self.root_sigma) + 2
                     if lookahead else 0)
        self.hold = round(F.PLANE_HOLD_S * fps) if lookahead else 0
        self.first_plane = min(round(F.PLANE_FIRST_S * fps), self.hold) if lookahead else 0
        self.refit = max(1, round(F.PLANE_REFIT_S * fps))
        #: ``(gap, a, b) -> None``: fill the records of one gap (frames without a person) again from
        #: the valid records either side (None: the clip's start/end), as the capture's gap filler
        #: did (:meth:`filters.GapFiller.fill_gap`); called when a lock changed ``a`` or ``b``
        #: after the gap was filled.  None: gaps keep their fill.
        self.refill_gap: Callable[[list, object, object], None] | None = None
        self.plane: np.ndarray | None = None        # the ankle plane (n, d): n . X + d = ankle height above it
        # offline, before the first plane: one from the still feet there are so far, for the provisional
        # labels written with the frames only (a capture killed then keeps labels and a plane); the
        # final labels and locks use ``plane`` alone, so the finished file does not depend on it
        self._provisional_plane: np.ndarray | None = None
        self._ankle_h = 0.0
        self._recs: deque = deque()                 # records kept for deciding: history index _first on
        self._first = 0                             # history index of self._recs[0]
        self._final = 0                             # frames before this one are decided (final)
        self._revised: list = []                    # records changed after they were handed on
        # per-frame history (all frames of the clip: a few numbers each)
        self._pos = _Rows((2, 3))                   # raw ankles in camera space (0 where invalid)
        self._seen = _Rows((2,), bool)
        self._dist = _Rows(())                      # the root's distance from the camera (0: no person)
        self._track = _Rows((), np.int64)           # track number: track_break frames start a new one
        self._kp = _Rows((2, 3, 2))                 # px and visibility of the feet's keypoints
        self._vis = _Rows((2, 3))
        self._labels = np.zeros((0, 2), bool)       # contact of the first len(_labels) frames (final)
        self._last_fit = 0
        self._rest_cache: tuple | None = None

    @property
    def ground_plane(self) -> np.ndarray | None:
        """``(4,)`` float32 ``(n, d)``: ``n . X + d`` = height above the ground (camera space), or None."""
        plane = self.plane if self.plane is not None else self._provisional_plane
        if plane is None:
            return None
        return np.concatenate([plane[:3], [plane[3] + self._ankle_h]]).astype(np.float32)

    @property
    def undecided(self) -> int:
        """Frames handed on whose labels and lock are not final yet (offline)."""
        return self._pos.n - self._final

    # -------------------------------------------------------------- input
    def _add(self, recs: list) -> None:
        """Append the feet's values of ``recs`` to the history, all records at once."""
        n = len(recs)
        ok = np.array([bool(r.valid and r.joints is not None) for r in recs], bool)
        kp, vis, seen = np.zeros((n, 2, 3, 2)), np.zeros((n, 2, 3)), np.zeros((n, 2), bool)
        pos, dist = np.zeros((n, 2, 3)), np.zeros(n)
        R = [r for r, o in zip(recs, ok) if o]
        if R:
            v = np.stack([np.asarray(r.keypoint_visibility, np.float64) for r in R])[:, F.FOOT_ROWS]
            legs = (np.stack([np.asarray(r.joint_confidence) for r in R])[:, F._LEG_JOINTS] > 0).all(-1)
            t = np.stack([np.asarray(r.transl, np.float64) for r in R])
            kp[ok] = np.stack([np.asarray(r.body_2d) for r in R])[:, F.FOOT_ROWS, :2]
            vis[ok] = v
            seen[ok] = (v >= F.SEEN).all(-1) & legs
            pos[ok] = np.stack([r.joints[F.ANKLES] for r in R]) + t[:, None]
            dist[ok] = np.linalg.norm(t, axis=-1)
            shaped = [r for r in R if r.scale is not None and r.betas is not None]
            if shaped:
                self._ankle_h = float(shaped[-1].scale) * self.ankle_height(shaped[-1].betas)
        last = int(self._track.a[-1]) if self._track.n else 0
        track = last + np.cumsum([bool(getattr(r, "track_break", False)) for r in recs])
        for rows, new in ((self._kp, kp), (self._vis, vis), (self._seen, seen), (self._pos, pos), (self._dist, dist),
                          (self._track, track)):
            rows.extend(new)
        self._recs.extend(recs)

    def _speeds(self, lo: int, hi: int) -> np.ndarray:
        """Image speeds of frames ``lo..hi-1`` (from frames ``lo-speed_half..hi-1+speed_half`` where they exist)."""
        k = self.speed_half
        a, b = max(lo - k, 0), min(hi + k, self._kp.n)
        kp, vis = self._kp.a[a:b], self._vis.a[a:b]
        depth = self._pos.a[a:b, :, 2]
        return F.foot_image_speed(kp, vis, depth, float(self.K()[0, 0]), self.fps, k)[lo - a:hi - a]

    def _fit_plane(self, final: bool) -> None:
        n = self._pos.n
        if n == 0 or (not final and n - self._last_fit < self.refit
                      and (self.plane is not None or n >= self.hold + self.refit)):
            return                      # (no plane by the end of the hold: tried again every refit)
        seen = self._seen.a
        L = len(self._labels)
        if self.plane is not None and self._labels[:L].any():
            use = self._labels                                        # contact frames
        else:                                                         # still, seen feet
            use = seen & (self._speeds(0, n) < F.ON_SPEED)
            if use.sum() < F.PLANE_MIN_FRAMES and not (final or n >= self.hold):
                return
            if self.plane is None and not final:
                # the first plane from the still feet of the first PLANE_FIRST_S (live: none), or up
                # to the PLANE_MIN_FRAMES-th still foot and a third planted run if that is later,
                # of frames whose speed window is complete, however the frames came in (the labels
                # made under it are final: from the frames there happened to be, they hung on the
                # capture's batch sizes)
                m = max(n if self.live else n - self.speed_half, 0)
                u = use[:m]
                runs = np.cumsum((u & ~np.concatenate([np.zeros((1, 2), bool), u[:-1]])).sum(1))
                enough = (np.cumsum(u.sum(1)) >= F.PLANE_MIN_FRAMES) & (runs >= 3)   # a plane needs 3 runs
                enough[:self.first_plane - 1] = False
                if enough.any():
                    use = u[:int(np.argmax(enough)) + 1]
                elif n < self.hold:
                    self._provisional_plane = self._plane_from(use)     # provisional labels meanwhile
                    return
        plane = self._plane_from(use)
        if plane is not None:
            self.plane = plane
        self._last_fit = n

    def _plane_from(self, use: np.ndarray) -> np.ndarray | None:
        """The plane through the ankles of the frames ``use (m, 2)`` marks, one point per planted run,
        or None with fewer than PLANE_MIN_FRAMES of them."""
        if use.sum() < F.PLANE_MIN_FRAMES:
            return None
        pts, frames = F.run_means(use, self._pos.a[:len(use)])
        return F.fit_ground_plane(pts, weights=frames, up=self.up() if self.up is not None else None)

    def _contacts(self, lo: int, hi: int, init, plane: np.ndarray | None = None) -> np.ndarray:
        """Contact ``(hi - lo, 2)`` of frames ``lo..hi-1`` under ``plane`` (default: the current
        plane), hysteresis from ``init``."""
        plane = self.plane if plane is None else plane
        height = self._pos.a[lo:hi] @ plane[:3] + plane[3]
        return F.contact_labels(height, self._speeds(lo, hi), self._seen.a[lo:hi], init)

    def _label(self, final: bool) -> np.ndarray:
        """Final labels of the frames whose neighbours are known (all when ``final``, or live);
        -> the provisional contact ``(n - len(_labels), 2)`` of the frames after them, from the image
        speed over the frames there are (one hysteresis pass: the final labels are its first rows)."""
        n, lo = self._pos.n, len(self._labels)
        if self.plane is None and self._provisional_plane is not None and not final and n > lo:
            return self._contacts(lo, n, False, self._provisional_plane)   # provisional only (see __init__)
        if self.plane is None or n <= lo:
            return np.zeros((n - lo, 2), bool)
        hi = max(n - (0 if final or self.live else self.speed_half), lo)
        c = self._contacts(lo, n, self._labels[-1] if lo else False)
        self._labels = np.concatenate([self._labels, c[:hi - lo]])
        return c[hi - lo:]

    def _provisional(self, recs: list, provisional: np.ndarray) -> None:
        """Contact labels of the newest records ``recs`` as known now: the final ones where they
        exist, else ``provisional`` (of the frames after the final labels)."""
        n, L = self._pos.n, len(self._labels)
        lo = n - len(recs)
        c = np.concatenate([self._labels[lo:L], provisional[max(lo - L, 0):]])
        for r, ci in zip(recs, c):
            r.foot_contact = ci.copy()

    def _rest(self, betas: np.ndarray, scale: float) -> np.ndarray:
        """Scaled rest joints ``(52, 3)`` of a shape (the clip's last one cached)."""
        key = (np.asarray(betas, np.float64).tobytes(), float(scale))
        if self._rest_cache is None or self._rest_cache[0] != key:
            self._rest_cache = (key, self.rest_joints(betas) * float(scale))
        return self._rest_cache[1]

    # -------------------------------------------------------------- output
    def push(self, recs) -> list:
        """Add the next records (file order); -> the records to hand on (offline: all of them, at once)."""
        recs = list(recs)
        if not recs:
            return recs
        self._add(recs)
        self._fit_plane(final=False)
        provisional = self._label(final=False)
        if self.live:                                   # decided now, before they are handed on
            self._decide(self._pos.n)
            return recs
        self._provisional(recs, provisional)
        if self.plane is None:
            if self._pos.n >= self.hold:
                self._revise(self._decide(self._pos.n))             # no plane (feet unseen): as they are
        elif len(self._labels) - self.need - self._final >= F.LOCK_BLOCK:
            self._revise(self._decide(len(self._labels) - self.need))
        return recs

    def flush(self) -> list:
        """The clip's end (or a cancel): decide every open frame; -> the records not handed on yet (none)."""
        self._fit_plane(final=True)
        self._label(final=True)
        changed = self._decide(self._pos.n)
        if not self.live:
            self._revise(changed)
        return []

    def take_revised(self) -> list:
        """The records changed since the last call after :meth:`push` had handed them on (each once)."""
        out, self._revised = self._revised, []
        return list({id(r): r for r in out}.values())

    def _revise(self, recs: list) -> None:
        self._revised.extend(recs)

    def _decide(self, upto: int) -> list:
        """Final labels and locks of frames ``_final..upto-1``; -> the records that changed."""
        a = self._final
        b = min(upto, self._first + len(self._recs))
        if b <= a:
            return []
        block = [self._recs[i - self._first] for i in range(a, b)]
        L = len(self._labels)
        contact = np.zeros((b - a, 2), bool)
        if L > a:
            contact[:min(L, b) - a] = self._labels[a:min(L, b)]
        changed = []
        for r, c in zip(block, contact):
            if not np.array_equal(getattr(r, "foot_contact", None), c):
                changed.append(r)
            r.foot_contact = c.copy()
        if L > a and self.plane is not None and self._labels[:L].any():
            changed += self._lock(block, a, b)
        if not self.live:
            changed += self._refill(changed)
        self._final = b
        self._drop()
        return changed

    def _drop(self) -> None:
        """Forget decided records but the last valid one before the open frames and the gap after it
        (within ``need`` frames; a leading gap from the clip's start too): a gap is filled again
        when a record either side of it is locked (:meth:`_refill`)."""
        lo = max(self._first, self._final - self.need)
        keep = self._final
        for i in range(self._final - 1, lo - 1, -1):
            if self._recs[i - self._first].valid:
                keep = i
                break
        else:
            if self._first == 0 and self._final <= self.need:
                keep = 0
        for _ in range(keep - self._first):
            self._recs.popleft()
        self._first = max(keep, self._first)

    def _refill(self, changed: list) -> list:
        """Gaps (runs of records without a person) next to a record in ``changed`` filled again
        (:attr:`refill_gap`); -> their records."""
        if self.refill_gap is None or not changed:
            return []
        moved = {id(r) for r in changed if r.valid}
        if not moved:
            return []
        recs = list(self._recs)
        valid = np.array([bool(r.valid) for r in recs])
        out: list = []
        edges = np.flatnonzero(np.diff(np.concatenate([[1], valid.astype(np.int8), [1]])))
        for i, j in zip(edges[::2], edges[1::2]):                     # invalid runs recs[i:j]
            if i == 0 and self._first > 0:
                continue                                              # its start is forgotten: keep its fill
            prev = recs[i - 1] if i > 0 else None
            nxt = recs[j] if j < len(recs) else None
            if (prev is not None and id(prev) in moved) or (nxt is not None and id(nxt) in moved):
                gap = recs[i:j]
                self.refill_gap(gap, prev, nxt)
                out += gap
        return out

    def _plan(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lock weights ``(n, 2)``, ankle targets ``(n, 2, 3)`` and the root's correction along its
        ray ``(n,)`` of frames ``s..e-1`` (labelled frames), from their labels and raw ankles."""
        pos = self._pos.a[s:e]
        lab = self._labels[s:e]
        plan = [F.lock_plan(lab[:, f], pos[:, f], self.blend, self.half_window) for f in range(2)]
        w = np.stack([p[0] for p in plan], 1)                          # (n, 2)
        target = np.stack([p[1] for p in plan], 1)                     # (n, 2, 3)
        far = np.stack([F.lock_plan(lab[:, f], pos[:, f], self.blend, self.depth_window)[1] for f in range(2)], 1)
        u = target / np.maximum(np.linalg.norm(target, axis=-1, keepdims=True), 1e-9)
        target = target + u * (u * (far - target)).sum(-1, keepdims=True)   # distance: the longer window's
        # across the ankle's viewing ray (what the image shows), at most F.MAX_IMAGE_OFFSET_M from where
        # the fit put it: a detector that moves a planted foot further is followed that far behind
        # in a span, from where the fit put the ankle on average over +-BOUND_HALF_S (the fit's
        # per-frame noise would make a bounded target zig-zag with it); blends: from the frame's own
        k = round(F.BOUND_HALF_S * self.fps)
        ref = np.stack([F.lock_plan(lab[:, f], pos[:, f], 0, k)[1] for f in range(2)], 1) if k > 0 else pos
        ref = np.where(lab[..., None], ref, pos)
        v = ref / np.maximum(np.linalg.norm(ref, axis=-1, keepdims=True), 1e-9)
        off = target - ref
        across = off - v * (v * off).sum(-1, keepdims=True)
        n_across = np.linalg.norm(across, axis=-1, keepdims=True)
        target = target - across * (1.0 - np.minimum(1.0, F.MAX_IMAGE_OFFSET_M / np.maximum(n_across, 1e-12)))
        if self.live:                                                  # nothing after the span is known
            w = np.where(lab, 1.0, 0.0)
        dist = self._dist.a[s:e]
        ok = dist > 0                                                  # frames with a person
        corr = np.where(ok, F.root_correction(w, dist, self.max_gap, self._track.a[s:e]), 0.0)
        if self.root_sigma > 0:                                        # smoothed over frames with a person
            corr = np.where(ok, F.smooth_centred(corr, self.root_sigma)
                            / np.maximum(F.smooth_centred(ok.astype(np.float64), self.root_sigma), 1e-9), 0.0)
        return w, target, corr

    def _lock(self, recs: list, a: int, b: int) -> list:
        """Lock the planted feet of frames ``a..b-1`` (``recs``) and correct the root along its ray;
        -> the records moved."""
        s = max(a - self.need - self.depth_window, 0)
        w, target, corr = self._plan(s, len(self._labels))
        sel = np.arange(a - s, b - s)
        sel = sel[[recs[i].valid and recs[i].joints is not None for i in range(len(sel))]]
        if not len(sel):
            return []
        wb, tb, cb = w[sel], target[sel], corr[sel]
        moved = (cb != 0) | (wb > 0).any(1)
        if not moved.any():
            return []
        R = [recs[i - (a - s)] for i in sel[moved]]
        wb, tb, cb = wb[moved], tb[moved], cb[moved]
        quat = np.stack([r.quat for r in R])
        rot = quat_wxyz_to_matrix(quat)
        transl = np.stack([r.transl for r in R]).astype(np.float64)
        transl = transl * (1.0 + cb / np.maximum(np.linalg.norm(transl, axis=-1), 1e-9))[:, None]   # along the ray
        rest = np.stack([self._rest(r.betas, r.scale) for r in R])
        J, G, _ = forward_kinematics_rt(rot, rest, self.parents)
        J = J + transl[:, None]
        for f in range(2):
            m = wb[:, f] > 0
            if not m.any():
                continue
            goal = J[m][:, F.ANKLES[f]] + wb[m, f, None] * (tb[m, f] - J[m][:, F.ANKLES[f]])
            rot[m] = F.apply_leg_ik(rot[m], G[m], J[m][:, F.HIPS[f]], J[m][:, F.KNEES[f]], J[m][:, F.ANKLES[f]], goal, f,
                                  F.MAX_KNEE_SHIFT, F.MAX_KNEE_SWIVEL)
            J2, G2, _ = forward_kinematics_rt(rot[m], rest[m], self.parents)
            J[m], G[m] = J2 + transl[m][:, None], G2
        q = matrix_to_quat_wxyz(rot)
        q = np.where((q * quat).sum(-1, keepdims=True) < 0, -q, q)
        joints = J - transl[:, None]
        for i, r in enumerate(R):
            r.quat, r.transl, r.joints = q[i], transl[i], joints[i]
        return R


__all__ = ["FootStage"]
