"""Would camera-motion compensation stop a handheld clip's planted feet sliding?  python
tools/camera_motion_check.py VIDEO CAPTURE.npz

Estimates the camera's frame-to-frame motion from the background (OpenCV corners tracked by
Lucas-Kanade at 480 px width, outside the person's keypoint box) two ways:

* rotation only: RANSAC homography inliers, then the rotation between their viewing rays
  (``scipy.spatial.transform.Rotation.align_vectors``);
* rotation and translation: corners on the capture's ``ground_plane`` (rays that meet it within
  12 m), back-projected onto it, then ``cv2.solvePnPRansac``;

and prints the ankles' mean horizontal speed over the capture's contact frames (the ``eval video``
figure) in camera space and in each estimate's world frame (docs/fidelity.md, "Session 6")."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from model_runtime.core.capture_file import load_capture  # noqa: E402
from model_runtime.evals.video import ANKLES, PosedCapture, foot_contact  # noqa: E402

WIDTH = 480


def main() -> None:
    video, cap = sys.argv[1], load_capture(sys.argv[2])
    kp, K = cap["keypoints_2d"], cap["camera_K"].astype(np.float64)
    Ki = np.linalg.inv(K)
    plane = np.asarray(cap["ground_plane"], np.float64)
    n, d = plane[:3] / np.linalg.norm(plane[:3]), plane[3] / np.linalg.norm(plane[:3])
    rays = lambda p: np.c_[p, np.ones(len(p))] @ Ki.T  # noqa: E731
    src = cv2.VideoCapture(video)
    prev = prev_mask = None
    R_world = [np.eye(3)]          # world <- camera t (rotation only)
    M = [np.eye(4)]                # camera t <- world (rotation and translation)
    for i in range(len(kp)):
        ok, frame = src.read()
        if not ok:
            break
        s = WIDTH / frame.shape[1]
        grey = cv2.cvtColor(cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        mask = np.full(grey.shape, 255, np.uint8)
        seen = kp[i, :, 2] > 0.2
        if seen.any():
            (x0, y0), (x1, y1) = kp[i, seen, :2].min(0) * s, kp[i, seen, :2].max(0) * s
            pad = 0.15 * (x1 - x0 + y1 - y0)
            mask[max(0, int(y0 - pad)):int(y1 + pad), max(0, int(x0 - pad)):int(x1 + pad)] = 0
        if prev is not None:
            pts = cv2.goodFeaturesToTrack(prev, 300, 0.01, 6, mask=prev_mask)
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, None)
            a, b = pts[st[:, 0] == 1, 0] / s, nxt[st[:, 0] == 1, 0] / s
            _, inl = cv2.findHomography(a, b, cv2.RANSAC, 3.0 / s)
            inl = inl[:, 0] == 1
            A, B = rays(a[inl]), rays(b[inl])
            Q, _ = Rotation.align_vectors(A / np.linalg.norm(A, axis=1, keepdims=True),
                                          B / np.linalg.norm(B, axis=1, keepdims=True))
            R_world.append(R_world[-1] @ Q.as_matrix())
            r = rays(a)
            z = -d / (r @ n)
            on = (z > 0) & (z < 12)
            T = np.eye(4)
            if on.sum() >= 6:
                ok, rv, tv, _ = cv2.solvePnPRansac(r[on] * z[on, None], b[on], K, None, reprojectionError=3.0)
                if ok:
                    T[:3, :3], T[:3, 3] = cv2.Rodrigues(rv)[0], tv[:, 0]
            M.append(T @ M[-1])
        prev, prev_mask = grey, mask
    T = len(R_world)
    posed = PosedCapture(cap, None)
    contact, horizontal, _ = foot_contact(cap, posed.joints)
    ank = posed.joints[:T, ANKLES]
    Minv = np.linalg.inv(np.array(M))
    worlds = {"camera space": ank,
              "rotation-only world": np.einsum("tij,tfj->tfi", np.array(R_world), ank),
              "ground-plane PnP world": np.einsum("tij,tfj->tfi", Minv[:, :3, :3], ank) + Minv[:, None, :3, 3]}
    both = contact[1:T] & contact[:T - 1]
    for name, X in worlds.items():
        step = np.linalg.norm(np.diff(X, axis=0) @ horizontal.T, axis=-1) * 1000
        print(f"{name:>24}: planted-foot slide {step[both].mean():.2f} mm/frame")
    rot = [np.degrees(Rotation.from_matrix(R_world[t - 1].T @ R_world[t]).magnitude()) for t in range(1, T)]
    print(f"camera rotation per frame (rotation only): {np.min(rot):.2f}-{np.max(rot):.2f} deg")


if __name__ == "__main__":
    main()
