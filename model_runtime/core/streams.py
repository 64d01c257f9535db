"""Streams that hold records back until the frames after them have arrived (standard library only).

:class:`HeldStream` is the one hold-and-release loop of the project's zero-lag (centred) smoothers:
:class:`model_runtime.capture.align_clip.CentredSmoother` (the aligned pose) and
:class:`model_runtime.face.smoothing.CentredExpressionSmoother` (the expression).  A subclass says
when the oldest held record has enough successors (:meth:`HeldStream._ready`) and how it is
released (:meth:`HeldStream._release`, which pops it from ``_held``).
"""
from __future__ import annotations

from collections import deque


class HeldStream:
    """Records in file order in, records out once their window ahead is complete (:meth:`push`);
    :meth:`flush` releases the rest at the clip's end."""

    def __init__(self) -> None:
        self._held: deque = deque()

    def _ready(self) -> bool:
        """Whether the oldest held record can be released now (``_held`` is not empty)."""
        raise NotImplementedError

    def _release(self):
        """Pop the oldest held record from ``_held``, finish it and return it."""
        raise NotImplementedError

    def push(self, recs) -> list:
        """Add ``recs`` (file order); -> the records released by them."""
        self._held.extend(recs)
        out = []
        while self._held and self._ready():
            out.append(self._release())
        return out

    def flush(self) -> list:
        """End of the clip: every held record, released."""
        out = []
        while self._held:
            out.append(self._release())
        return out
