"""Issue 8: bad input never becomes NaN, a traceback or lost frames.

The same cases as ``docs/reliability.md``: usage errors and output problems of the real CLI
(exit code, one line, nothing loaded or written), capture-file recovery (never deleting or
replacing what was captured, a damaged chunk skipping only itself), the real ``serve`` and
``capture`` processes stopped by SIGTERM, and ``fullbody_addon.headless`` refusing a NaN capture.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import blender_helpers as H
from model_runtime.core import protocol as P
from model_runtime.core.capture_file import CaptureWriter, load_capture, partial_dir, recover
from model_runtime.core.errors import (
    EXIT_CANCELLED, EXIT_MODEL_FILE, EXIT_NO_PERSON, EXIT_OUTPUT, EXIT_USAGE, ModelFileError,
)
from model_runtime.core.options import CaptureOptions, OptionError, SmoothingConfig

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "demo_clip.mp4"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model_runtime", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


#: printed by a child process after a CLI call: the heavy libraries it imported (``[]`` = none)
PRINT_HEAVY = "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'cv2', 'mediapipe', 'scipy'}))"


def own_lines(stderr: str) -> list[str]:
    """stderr lines of the project itself (MediaPipe/absl/TFLite chatter left out)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("W0000", "I0000", "INFO:", "WARNING:"))]


# ------------------------------------------------------------------ 1, 7: usage errors are one line, exit 2
USAGE_CASES = {
    "nan beta": ["--end", "40", "--beta", "nan"],
    "reversed range": ["--start", "50", "--end", "10"],
    "negative start": ["--start", "-3"],
    "nan fov": ["--fov", "nan"],
    "zero fps": ["--fps", "0"],
    "inf fps": ["--fps", "inf"],
    "negative cut-off": ["--min-cutoff", "-1"],
    "nan cut-off": ["--min-cutoff", "nan"],
    "negative face-every": ["--face-every", "-2"],
    "smoothing strength 2": ["--smoothing", "2"],
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_usage_errors_are_one_line_and_exit_2(case, tmp_path):
    """Through the real entry point: no traceback, one line naming the flag, no file, no model loaded."""
    out = tmp_path / "o.npz"
    args = ["capture", str(CLIP), "-o", str(out), *USAGE_CASES[case]]
    r = subprocess.run([sys.executable, "-c", "import sys; from model_runtime.cli.main import main; "
                        f"rc = main({args!r}); {PRINT_HEAVY}; sys.exit(rc)"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == EXIT_USAGE, r.stderr
    lines = own_lines(r.stderr)
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in r.stderr, r.stderr
    flag = [a for a in USAGE_CASES[case] if a.startswith("--")][-1]
    assert flag in lines[0] or flag.lstrip("-").replace("-", "_") in lines[0], lines[0]
    assert r.stdout.split() in ([], ["[]"])   # no torch, cv2 or detector library was loaded
    assert not out.exists() and not partial_dir(out).exists()


def test_every_command_has_help(capsys):
    """``--help`` of every command prints its usage (an empty argparse group once broke capture's)."""
    from model_runtime.cli.main import COMMANDS, main

    for path, _, _ in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0 and f"usage: python -m model_runtime {' '.join(path)}" in capsys.readouterr().out
    main_help = subprocess.run([sys.executable, "-c", "import sys; from model_runtime.cli.main import main\n"
                                f"try:\n    main(['capture', '--help'])\nexcept SystemExit:\n    {PRINT_HEAVY}"],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "--calibration" in main_help.stdout and main_help.stdout.split()[-1] == "[]", main_help.stderr


def test_progress_without_a_terminal_is_one_line_per_redraw():
    """In a log file or a pipe the capture progress is whole lines (no carriage returns)."""
    import io

    from model_runtime.cli.capture import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream, log_interval=0)
    for done in range(1, 6):
        bar(done, 5, 30.0)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    assert "5/5" in text.splitlines()[-1] and "frame/s" in text.splitlines()[-1]
    live = io.StringIO()                       # a camera: no total
    bar = ProgressBar(live, log_interval=0)
    bar(3, None, 30.0)
    bar.close()
    assert live.getvalue().splitlines()[-1].startswith("3 frames")


def test_options_schema_refuses_bad_values_and_keys_by_name():
    for bad, name in (({"fov": float("nan")}, "fov"), ({"end": 3, "start": 5}, "end"), ({"colour": 1}, "colour"),
                      ({"smoothing": {"strength": 0.5}}, "smoothing.strength"), ({"hands": "yes"}, "hands"),
                      ({"start": 1.5}, "start"), ({"device": "tpu"}, "device"), ({"smoothing": {"beta": -1}},
                                                                                  "smoothing.beta")):
        with pytest.raises(OptionError) as ei:
            CaptureOptions.from_mapping(bad)
        assert ei.value.option == name and ei.value.exit_code == EXIT_USAGE
    # the add-on's slider: 0 = raw, the default strength = the CLI's default parameters, monotone
    assert not SmoothingConfig.from_strength(0.0).enabled
    assert SmoothingConfig.from_strength(0.5) == SmoothingConfig() == CaptureOptions().smoothing
    cut = [SmoothingConfig.from_strength(s).min_cutoff for s in (0.1, 0.5, 0.9)]
    assert cut == sorted(cut, reverse=True)
    o = CaptureOptions(start=3, end=9, fov=50.0, smoothing=SmoothingConfig.from_strength(0.8), face=False)
    assert CaptureOptions.from_mapping(P.decode(P.encode({"cmd": "health", "o": o.to_mapping()}))["o"]) == o


# ------------------------------------------------------------------ 6, 12: output problems before any model loads
def test_output_problems_are_found_before_models_load(tmp_path):
    existing = tmp_path / "have.npz"
    existing.write_bytes(b"precious")
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    cases = {str(folder): "is a folder", str(tmp_path / "missing" / "o.npz"): "does not exist",
             "/proc/fullbody.npz": "cannot write", str(existing): "exists", str(tmp_path / "o.txt"): ".npz"}
    for out, words in cases.items():
        r = subprocess.run([sys.executable, "-c", "import sys; from model_runtime.cli.main import main; "
                            f"rc = main(['capture', {str(CLIP)!r}, '-o', {out!r}]); {PRINT_HEAVY}; sys.exit(rc)"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
        lines = own_lines(r.stderr)
        assert r.returncode == EXIT_OUTPUT and len(lines) == 1 and words in lines[0] and out in lines[0], r.stderr
        assert r.stdout.split() == ["[]"]
    assert existing.read_bytes() == b"precious"


def test_a_run_without_a_person_never_replaces_a_capture(tmp_path):
    """--overwrite replaces only on success: a clip with nobody in it leaves the old capture alone."""
    import cv2

    video = tmp_path / "empty.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(12):
        w.write(np.full((120, 160, 3), 20 * i % 255, np.uint8))
    w.release()
    out = tmp_path / "keep.npz"
    keep = H.write_capture(out, T=7)
    before = out.read_bytes()
    r = cli("capture", str(video), "-o", str(out), "--overwrite", "--no-face", "--quiet")
    assert r.returncode == EXIT_NO_PERSON, r.stderr
    assert out.read_bytes() == before and load_capture(keep).num_frames == 7
    kept = sorted(tmp_path.glob("keep.partial-*.npz"))
    assert len(kept) == 1 and load_capture(kept[0]).num_frames == 12 and not load_capture(kept[0])["valid"].any()
    assert str(kept[0]) in own_lines(r.stderr)[-1]


# ------------------------------------------------------------------ 1: the pipeline and the writer never write NaN
def test_writer_refuses_non_finite_values_naming_frame_and_key(tmp_path):
    w = CaptureWriter(tmp_path / "w.npz", static=dict(fps=np.float32(30)), chunk_frames=4)
    row = dict(pose_6d=np.zeros((52, 6)), transl=np.zeros(3), valid=True, keypoints_2d=np.zeros((1, 3)),
               keypoints_3d=np.zeros((1, 3)), face_expression=np.zeros(0), face_sh=np.zeros(27))
    w.append(**row)
    with pytest.raises(ValueError, match=r"frame 1 'transl' is not finite"):
        w.append(**{**row, "transl": np.array([0.0, np.nan, 1.0])})
    with pytest.raises(ValueError, match="'scale' is not finite"):
        w.update_static(scale=np.float32(np.inf))


def test_detector_points_with_nan_become_unseen():
    from model_runtime.capture.fitting import finite_keypoints

    p2 = np.array([[10.0, 20.0, 0.9], [np.nan, 5.0, 0.8], [1.0, 2.0, 0.7]])
    p3 = np.array([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0], [np.inf, 0.0, 0.0]])
    a, b = finite_keypoints(p2, p3, 7, "body")
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert a[:, 2].tolist() == [0.9, 0.0, 0.0] and (a[0] == p2[0]).all()


def test_headless_refuses_a_nan_capture_and_writes_nothing(tmp_path):
    pytest.importorskip("bpy")
    good = H.write_capture(tmp_path / "good.npz", T=5)
    with np.load(good) as z:
        d = {k: z[k] for k in z.files}
    d["pose_6d"][1, 3, 0] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **d)
    fbx = tmp_path / "out.fbx"
    r = subprocess.run([sys.executable, "-m", "fullbody_addon.headless", str(bad), "--fbx", str(fbx)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_MODEL_FILE and not fbx.exists()
    assert "pose_6d" in r.stderr and str(bad) in r.stderr and "frame 1" in r.stderr


# ------------------------------------------------------------------ 5: recovery never hides or loses data
def _unfinished(path: Path, T: int, seed: int = 0) -> Path:
    """An unfinished capture: chunks of 8 frames on disk, never consolidated (a killed run)."""
    return H.write_capture(path, T=T, seed=seed, finish=False, chunk_frames=8)


def test_a_new_run_recovers_an_unrecovered_partial_instead_of_deleting_it(tmp_path):
    out = _unfinished(tmp_path / "cap.npz", T=16)
    assert partial_dir(out).exists() and not out.exists()
    w = CaptureWriter(out, static=dict(fps=np.float32(30)))     # a re-run to the same output
    assert w.recovered == tmp_path / "cap.recovered-1.npz"
    assert load_capture(w.recovered).num_frames == 16


def test_load_prefers_the_newer_of_file_and_partial_and_says_which(tmp_path):
    out = H.write_capture(tmp_path / "cap.npz", T=5)            # a finished capture
    old_bytes = out.read_bytes()
    time.sleep(0.05)
    _unfinished(out, T=24)                                       # a newer run died at the same path
    os.utime(out, (time.time() - 60, time.time() - 60))
    cap = load_capture(out)
    assert cap.num_frames == 24 and cap.path == tmp_path / "cap.recovered-1.npz"
    assert "newer unfinished" in cap.notes[0] and str(out) in cap.notes[0]
    assert out.read_bytes() == old_bytes                         # the older finished capture is untouched
    # the other way round: an older partial is left alone and said so
    _unfinished(tmp_path / "b.npz", T=8)
    H.write_capture(tmp_path / "b2.npz", T=3).rename(tmp_path / "b.npz")
    cap = load_capture(tmp_path / "b.npz")
    assert cap.num_frames == 3 and "older unfinished" in cap.notes[0] and partial_dir(tmp_path / "b.npz").exists()


def test_a_corrupt_chunk_skips_only_itself(tmp_path):
    ref = load_capture(H.write_capture(tmp_path / "ref.npz", T=32))
    out = _unfinished(tmp_path / "c.npz", T=32)                  # the same frames in chunks of 8
    chunk = next(partial_dir(out).glob("chunk_00000008_*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:100])                  # damaged on disk
    cap = load_capture(out)
    assert cap.num_frames == 32
    assert cap["valid"].tolist() == [True] * 8 + [False] * 8 + [True] * 16
    assert np.array_equal(cap["transl"][16:], ref["transl"][16:]) and np.array_equal(cap["pose_6d"][:8], ref["pose_6d"][:8])
    assert np.allclose(cap["pose_6d"][8:16], cap["pose_6d"][7])   # held, not garbage


def test_a_failed_run_keeps_frames_beside_an_existing_capture(tmp_path):
    out = H.write_capture(tmp_path / "cap.npz", T=5)
    old = out.read_bytes()
    w = CaptureWriter(out, static=dict(fps=np.float32(30)))
    w.append(pose_6d=np.zeros((52, 6)), transl=np.zeros(3), valid=True, keypoints_2d=np.zeros((1, 3)),
             keypoints_3d=np.zeros((1, 3)), face_expression=np.zeros(0), face_sh=np.zeros(27))
    kept = w.abort()
    assert kept == tmp_path / "cap.partial-1.npz" and out.read_bytes() == old
    assert np.load(kept)["pose_6d"].shape[0] == 1


def test_recover_without_static_names_the_folder(tmp_path):
    d = partial_dir(tmp_path / "x.npz")
    d.mkdir()
    with pytest.raises(ModelFileError, match="static.npz"):
        recover(tmp_path / "x.npz")


def _frame(x: float) -> dict:
    """A minimal capture-file frame whose translation is ``(x, 0, 0)``."""
    return dict(pose_6d=np.zeros((52, 6)), transl=np.array([x, 0.0, 0.0]), valid=True, keypoints_2d=np.zeros((1, 3)),
                keypoints_3d=np.zeros((1, 3)), face_expression=np.zeros(0), face_sh=np.zeros(27))


def test_writer_rewrites_written_and_buffered_frames_in_place(tmp_path):
    """The feet stage's mechanism: a frame already written is written again where it is; the chunk
    keeps its name (a kill sees the old or the new chunk, whole); a frame not appended is refused."""
    out = tmp_path / "rw.npz"
    w = CaptureWriter(out, static=dict(fps=np.float32(30)), chunk_frames=4)
    for i in range(10):                                   # chunks 0-3 and 4-7 on disk, 8-9 buffered
        w.append(**_frame(i))
    names = sorted(p.name for p in partial_dir(out).glob("chunk_*.npz"))
    w._cache.clear()                                      # chunk 0 and 4 read back from disk
    w.rewrite({1: _frame(101), 5: _frame(105), 6: _frame(106), 9: _frame(109)})
    assert sorted(p.name for p in partial_dir(out).glob("chunk_*.npz")) == names
    assert not list(partial_dir(out).glob("*.tmp"))
    with pytest.raises(IndexError, match="frame 10"):
        w.rewrite({10: _frame(110)})
    with pytest.raises(ValueError, match="frame 2 'transl' is not finite"):
        w.rewrite({2: _frame(np.nan)})
    w.rewrite({2: _frame(102)})                           # from the chunk kept in memory
    kill = tmp_path / "kill"                              # what a kill now would leave: the chunks on disk
    shutil.copytree(partial_dir(out), partial_dir(kill.with_suffix(".npz")))
    np.testing.assert_array_equal(np.load(recover(kill.with_suffix(".npz")))["transl"][:, 0],
                                  [0, 101, 102, 3, 4, 105, 106, 7])
    np.testing.assert_array_equal(np.load(w.close())["transl"][:, 0], [0, 101, 102, 3, 4, 105, 106, 7, 8, 109])


# ------------------------------------------------------------------ 3: SIGTERM stops like Ctrl-C, per-clip values kept
def _wait_for_chunks(out: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(list(partial_dir(out).glob("chunk_*.npz"))) >= n:
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    raise AssertionError("no chunks written")


def test_capture_stopped_by_sigterm_keeps_frames_and_per_clip_values(tmp_path):
    out = tmp_path / "term.npz"
    # the feet stage on (the default): it writes frames as they come and rewrites the span it locks
    proc = subprocess.Popen([sys.executable, "-m", "model_runtime", "capture", str(CLIP), "-o", str(out), "--quiet"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    _wait_for_chunks(out, 5, proc)                       # 40 frames: past the 30-frame shape window
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == EXIT_CANCELLED, err
    cap = load_capture(out)
    assert 40 <= cap.num_frames < 81 and str(out) in err
    assert np.abs(cap["betas"]).sum() > 0 and cap["scale"] != 1.0 and np.abs(cap["face_identity"]).sum() > 0
    # the feet stage's open span was decided on the way out: labelled, on a ground plane
    assert cap["foot_contact"].any() and cap["ground_plane"].any()


def _longer_clip(path: Path, times: int = 3) -> Path:
    """The demo clip's real frames ``times`` over, as one video (the SIGTERM below must reach a job still
    running: on the 81-frame clip a loaded machine once finished the job first)."""
    import cv2

    frames = []
    vc = cv2.VideoCapture(str(CLIP))
    fps = vc.get(cv2.CAP_PROP_FPS) or 30.0
    while True:
        ok, img = vc.read()
        if not ok:
            break
        frames.append(img)
    vc.release()
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(times):
        for img in frames:
            vw.write(img)
    vw.release()
    return path


def test_serve_survives_bad_lines_and_sigterm_keeps_the_job(tmp_path):
    out = tmp_path / "serve.npz"
    clip = _longer_clip(tmp_path / "longer.mp4")
    proc = subprocess.Popen([sys.executable, "-m", "model_runtime", "serve", "--log-level", "WARNING"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        events = iter(proc.stdout.readline, b"")
        assert P.decode(next(events))["event"] == "hello"
        proc.stdin.write(P.encode(P.request("capture", id="c", source=str(clip), output=str(out),
                                            options={"face": False})))   # the feet stage on (the default)
        proc.stdin.flush()
        bad = [b"\xff\xfe\n", b"[" * 200000 + b"]" * 200000 + b"\n", b'{"cmd": ["capture"]}\n',
               b'{"cmd": "capture", "id": "x", "source": 1.5, "output": "o.npz"}\n', b"1e999999\n"]
        for line in bad:
            proc.stdin.write(line)
            proc.stdin.flush()
        errors, progress = [], 0
        while len(errors) < len(bad) or progress < 40:
            ev = P.decode(next(events))
            if ev["event"] == "error":
                assert ev["id"] in (None, "x") and ev["exit_code"] == EXIT_USAGE, ev
                errors.append(ev)
            elif ev["event"] == "progress" and ev["id"] == "c":
                progress = ev["frame"]
            assert ev["event"] != "done", "the job ended before the SIGTERM"
        proc.send_signal(signal.SIGTERM)
        rest = [P.decode(ln) for ln in events]
        done = [e for e in rest if e["event"] == "done"]
        assert done and done[0]["cancelled"] and done[0]["output"] == str(out)
        assert proc.wait(60) == EXIT_CANCELLED
        cap = load_capture(out)
        assert cap.num_frames >= 40 and np.abs(cap["betas"]).sum() > 0 and cap["foot_contact"].any()
    finally:
        if proc.poll() is None:
            proc.kill()
