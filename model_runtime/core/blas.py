"""Which OpenBLAS kernels numpy uses (stdlib only: this runs before numpy is imported).

numpy's wheel bundles OpenBLAS 0.3.23 built for every x86 generation (``DYNAMIC_ARCH``), which
picks its kernels from the CPU's model number.  It does not know recent Xeons (Sapphire Rapids
with AVX-512 and AMX, shown by a VM as a generic "Intel(R) Xeon(R) Processor") and falls back to
``Prescott``: SSE3 kernels, a 512 x 512 float32 matrix-vector product 4-5x slower than with the
AVX-512 ones.  That made the IK's batch-1 numpy path (``ik/numpy_path.py``: ~8 MB of float32
weights through gemv per frame) 3.5 ms instead of 0.66 ms (docs/iknet.md).

:func:`select_openblas_core` sets ``OPENBLAS_CORETYPE`` from the CPU's feature flags (SkylakeX
kernels where AVX-512 F/BW/DQ/VL are present, Haswell where AVX2 and FMA are), which OpenBLAS
reads when it loads.  It does nothing when the variable is already set (the user's choice), when
numpy is already loaded (too late: e.g. inside Blender), or off Linux.  ``model_runtime``'s
package ``__init__`` calls it, so ``python -m model_runtime`` and the add-on's runtime
subprocess get it; the variable is inherited by the processes they start.

:func:`limit_numpy_blas_threads` caps the OpenBLAS thread pools already loaded (the capture, the trainers).
"""
from __future__ import annotations

import os
import sys

#: OpenBLAS core names by the CPU flags they need (first match wins)
CORES: tuple[tuple[str, frozenset[str]], ...] = (
    ("SkylakeX", frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"})),
    ("Haswell", frozenset({"avx2", "fma"})),
)


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first CPU's feature flags (empty when unreadable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def core_for(flags: frozenset[str]) -> str | None:
    """The OpenBLAS core for these CPU flags, or None (leave OpenBLAS's own choice)."""
    for name, need in CORES:
        if need <= flags:
            return name
    return None


def select_openblas_core() -> str | None:
    """Set ``OPENBLAS_CORETYPE`` before numpy loads (module docstring); -> the core set, or None."""
    if "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules or not sys.platform.startswith("linux"):
        return None
    core = core_for(cpu_flags())
    if core is not None:
        os.environ["OPENBLAS_CORETYPE"] = core
    return core


def _openblas_libraries() -> list | None:
    """``[(path, ctypes.CDLL)]`` of the OpenBLAS libraries loaded in this process (from
    ``/proc/self/maps``; those that cannot be opened are left out), None where the map is unreadable."""
    import ctypes
    import re

    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
    except OSError:
        return None
    out = []
    for path in paths:
        try:
            out.append((path, ctypes.CDLL(path)))
        except OSError:
            continue
    return out


def openblas_core() -> str | None:
    """The kernel set numpy's OpenBLAS runs (e.g. ``SkylakeX``, ``Prescott``), or None if unknown."""
    import ctypes

    import numpy  # noqa: F401 - its OpenBLAS must be loaded

    for path, lib in _openblas_libraries() or ():
        if "numpy" not in path:
            continue
        for name in ("openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None


def limit_numpy_blas_threads(n: int) -> bool:
    """Cap the OpenBLAS thread pools loaded in this process (numpy's, and the copies other wheels
    bundle) at ``n`` (what ``OPENBLAS_NUM_THREADS`` does at start-up); returns False where none is
    loaded (another BLAS, another OS: then nothing changes).

    Why: OpenBLAS threads spin while they wait for work.  With a 936 x 58 Gauss-Newton product
    per tracked face (and the IK's small matrices) they took the core MediaPipe runs on: on
    the 2-core machine the face tracker went from ~3 ms to ~46 ms per frame inside a capture.
    """
    import ctypes

    libs = _openblas_libraries()
    if libs is None:
        return False
    done = False
    for _, lib in libs:                     # numpy's, and copies other wheels (OpenCV, SciPy) bundle
        for name in ("openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(int(n)))
                done = True
    return done
