"""The fast landmark face tracker (:mod:`model_runtime.face.tracker`).

Built-in face + shipped correspondence (both committed): exact
landmarks of posed faces, the analytic gradient against finite differences, identity
learning, warm-started tracking of a change, bad input.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from model_runtime.face.render import intrinsics, project
from model_runtime.face.tracker import FaceTrack, FaceTracker, _Problem, _rodrigues


@pytest.fixture(scope="module")
def tracker() -> FaceTracker:
    from model_runtime.models.face_model import load_builtin_face

    return FaceTracker(load_builtin_face())


def _view(yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera ``(R, t, K)`` (320 px image, face ~half the image tall)."""
    from model_runtime.face.correspondence import view_rotation

    K = intrinsics(320, 320)
    return view_rotation(yaw, pitch), np.array([0.0, 0.0, 0.75]), K


def _landmarks(tr: FaceTracker, R, t, K, expression, identity=None) -> np.ndarray:
    """Exact MediaPipe-style landmarks ``(468, 3)`` (x, y px, relative depth px) of a posed face."""
    pts = tr.landmark_points(expression, identity) @ R.T + t
    return np.c_[project(pts, K), (pts[:, 2] - pts[:, 2].mean()) * K[0, 0] / t[2]]


def _angle_deg(Ra, Rb) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def _expr(tr: FaceTracker, **weights) -> np.ndarray:
    e = np.zeros(tr.num_expression)
    names = list(tr.model.exp_names)
    for k, v in weights.items():
        e[names.index(k)] = v
    return e


def test_exact_landmarks_recover_pose_and_expression_then_track_a_change(tracker):
    """From scratch: pose within 1 deg, closed eyes and half-open jaw found, no spread over other
    shapes; the warm-started next frame (head turned 4 deg, eyes open, jaw 0.2) follows it."""
    names = list(tracker.model.exp_names)
    R, t, K = _view(-10.0, 5.0)
    e1 = _expr(tracker, eyeBlinkLeft=1.0, eyeBlinkRight=1.0, jawOpen=0.5)
    ident = np.zeros(tracker.num_identity)
    tr1 = tracker.track(_landmarks(tracker, R, t, K, e1), K, ident)
    assert tr1.landmark_error_px < 1.0 and _angle_deg(tr1.rotation, R) < 1.0
    got = {n: float(tr1.expression[names.index(n)]) for n in ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen")}
    assert got["eyeBlinkLeft"] > 0.65 and got["eyeBlinkRight"] > 0.65 and abs(got["jawOpen"] - 0.5) < 0.15, got
    others = np.delete(tr1.expression, [names.index(n) for n in got])
    assert others.sum() < 0.5, "the pose should not spread over other shapes"
    assert np.all((tr1.expression >= 0) & (tr1.expression <= 1))

    R2, _, _ = _view(-6.0, 5.0)
    e2 = _expr(tracker, jawOpen=0.2, mouthSmileLeft=0.6, mouthSmileRight=0.6)
    tr2 = tracker.track(_landmarks(tracker, R2, t, K, e2), K, ident, previous=tr1)
    assert tr2.iterations <= tracker.config.iterations and _angle_deg(tr2.rotation, R2) < 1.0
    assert tr2.expression[names.index("eyeBlinkLeft")] < 0.2 and tr2.expression[names.index("eyeBlinkRight")] < 0.2
    assert abs(tr2.expression[names.index("jawOpen")] - 0.2) < 0.12
    assert min(tr2.expression[names.index("mouthSmileLeft")], tr2.expression[names.index("mouthSmileRight")]) > 0.35


def test_gradient_matches_finite_differences(tracker):
    """The Gauss-Newton gradient (IRLS weights at the linearisation point) is the energy's
    gradient: rotation, translation, expression and identity against central differences."""
    # the view-dependent landmark weights are held fixed within a step (as FaceFitter detaches them):
    # with zero landmark normals they are constant, and the gradient must then be exact
    tracker = copy.copy(tracker)
    tracker._normals = np.zeros_like(tracker._normals)
    rng = np.random.default_rng(0)
    R, t, K = _view(15.0, -8.0)
    target = _landmarks(tracker, R, t, K, _expr(tracker, jawOpen=0.4), rng.normal(0, 0.5, tracker.num_identity))
    target[:, :2] += rng.normal(0, 2.0, (468, 2))                # residuals in both Charbonnier regimes
    e = np.clip(rng.uniform(-0.2, 0.5, tracker.num_expression), 0.01, 0.99)    # interior: L1 is smooth
    ident = rng.normal(0, 0.3, tracker.num_identity)
    prob = _Problem(tracker, target[:, :2], K, 1.0 / (0.01 * 160) ** 2, e_prev=e * 0.5, fit_identity=True)
    _, (_, g) = prob.linearise(R, t, e, ident)
    h = 1e-6
    for k in [0, 1, 2, 3, 4, 5, 6 + 17, 6 + 40, 6 + tracker.num_expression + 3]:
        d = np.zeros_like(g)
        d[k] = h
        ep = prob.linearise(*_apply_raw(prob, d, R, t, e, ident))[0]
        em = prob.linearise(*_apply_raw(prob, -d, R, t, e, ident))[0]
        assert abs((ep - em) / (2 * h) - g[k]) < 1e-5 * max(1.0, abs(g[k])), (k, (ep - em) / (2 * h), g[k])


def _apply_raw(prob, delta, R, t, e, ident):
    """The parameter update without the box projection (for finite differences)."""
    ke = prob.Ke
    return _rodrigues(delta[:3]) @ R, t + delta[3:6], e + delta[6:6 + ke], ident + delta[6 + ke:]


def test_identity_learning_reduces_the_landmark_error(tracker):
    """A face whose identity is not the mean: with the identity free the landmarks fit ~exactly,
    with the mean identity they cannot."""
    rng = np.random.default_rng(1)
    R, t, K = _view(5.0, 0.0)
    ident = rng.normal(0, 1.0, tracker.num_identity)
    lm = _landmarks(tracker, R, t, K, _expr(tracker, jawOpen=0.3), ident)
    zero = np.zeros(tracker.num_identity)
    fixed = tracker.track(lm, K, zero)
    learnt = tracker.track(lm, K, zero, fit_identity=True)
    assert learnt.landmark_error_px < 0.5 * fixed.landmark_error_px and learnt.landmark_error_px < 0.5
    assert np.corrcoef(learnt.identity, ident)[0, 1] > 0.5


def test_bad_landmarks_are_refused(tracker):
    K = intrinsics(320, 320)
    with pytest.raises(ValueError, match=r"landmarks must be \(468"):
        tracker.track(np.zeros((68, 3)), K, np.zeros(tracker.num_identity))
    assert isinstance(tracker.track(_landmarks(tracker, *_view(0, 0), np.zeros(tracker.num_expression)), K,
                                    np.zeros(tracker.num_identity)), FaceTrack)
