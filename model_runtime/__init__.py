"""Full-body capture runtime (no bpy): models, networks, pipeline and CLI.

Runs as ``python -m model_runtime ...`` and as the subprocess the Blender
extension starts.  See ``docs/ARCHITECTURE.md`` for the module map.
"""
__version__ = "0.1.0"

from .core.blas import select_openblas_core

select_openblas_core()   # before numpy loads: the right OpenBLAS kernels on CPUs it does not know
