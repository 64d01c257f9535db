"""Per-thread CPU time of real captures: python tools/thread_cpu.py VIDEO N [RUNS] (the first N frames, RUNS
captures in one process, default 2; the first pays the lazy imports).  Threads are sampled from
/proc/self/task every 50 ms (Linux) and named by ``threading`` where Python started them; MediaPipe's graph
threads carry their own names, other native threads (FFmpeg's decoders) show as 'python'."""
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
from model_runtime.capture.pipeline import build_pipeline  # noqa: E402
from model_runtime.capture.sources import open_source  # noqa: E402
from model_runtime.core.options import CaptureOptions  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
names: dict[int, str] = {}


def snapshot() -> dict[int, tuple[str, float]]:
    """``{tid: (name, cpu seconds)}`` of the live threads."""
    for th in threading.enumerate():
        names[th.native_id] = th.name
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            s = open(f"/proc/self/task/{t}/stat").read()
        except OSError:
            continue
        comm, f = s[s.index("(") + 1:s.rindex(")")], s[s.rindex(")") + 2:].split()
        out[int(t)] = (names.get(int(t), comm), (int(f[11]) + int(f[12])) / TICK)
    return out


def main() -> None:
    video, n = sys.argv[1], int(sys.argv[2])
    for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 2):
        pipe = build_pipeline(CaptureOptions(device="cpu", end=n))
        base, last, stop = snapshot(), {}, threading.Event()

        def sample():
            while not stop.is_set():
                last.update(snapshot())
                time.sleep(0.05)

        th = threading.Thread(target=sample, name="sampler")
        th.start()
        c0, t0 = time.process_time(), time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, open_source(video, end=n) as src:
            pipe.run(src, Path(tmp) / "x.npz")
        stop.set()
        th.join()
        total: dict[str, float] = {}
        for tid, (name, cpu) in last.items():
            total[name] = total.get(name, 0.0) + cpu - base.get(tid, (name, 0.0))[1]
        print(f"wall {time.perf_counter() - t0:.2f} s, process CPU {time.process_time() - c0:.2f} s")
        for name, cpu in sorted(total.items(), key=lambda kv: -kv[1]):
            if cpu > 0.01:
                print(f"  {cpu:6.2f}  {name}")
        pipe.detector.close()


if __name__ == "__main__":
    main()
