"""Errors of the runtime and the exit codes the CLI maps them to.

Every error names the file (and field or frame) it is about.  The Blender side
turns these messages into ``self.report`` at the operator boundary; the CLI
prints them and exits with :attr:`RuntimeErrorBase.exit_code`.
"""
from __future__ import annotations

from typing import Final

EXIT_OK: Final[int] = 0
EXIT_USAGE: Final[int] = 2
EXIT_INPUT_MISSING: Final[int] = 3      # file or camera does not exist / cannot be opened
EXIT_INPUT_UNREADABLE: Final[int] = 4   # codec/corrupt file, zero frames
EXIT_MODEL_FILE: Final[int] = 5         # malformed body/face model file or capture file
EXIT_NO_PERSON: Final[int] = 6          # no person found in any frame
EXIT_SOURCE_LOST: Final[int] = 7        # camera disconnected / stream ended early
EXIT_CANCELLED: Final[int] = 8          # cancelled by the user (partial result kept)
EXIT_OUTPUT: Final[int] = 9             # the output cannot be written (folder, read-only, exists)
EXIT_INTERNAL: Final[int] = 10          # unexpected crash (traceback printed)


class RuntimeErrorBase(Exception):
    exit_code: int = EXIT_INTERNAL


class ModelFileError(RuntimeErrorBase):
    """A model/asset/capture file is missing, truncated or has a mis-shaped field."""

    exit_code = EXIT_MODEL_FILE

    def __init__(self, path: str, field: str | None, problem: str):
        self.path, self.field, self.problem = str(path), field, problem
        where = f"{self.path}" + (f": field '{field}'" if field else "")
        super().__init__(f"{where} {problem}")


class InputMissingError(RuntimeErrorBase):
    exit_code = EXIT_INPUT_MISSING


class InputUnreadableError(RuntimeErrorBase):
    exit_code = EXIT_INPUT_UNREADABLE


class NoPersonError(RuntimeErrorBase):
    exit_code = EXIT_NO_PERSON


class SourceLostError(RuntimeErrorBase):
    exit_code = EXIT_SOURCE_LOST


class CancelledError(RuntimeErrorBase):
    exit_code = EXIT_CANCELLED


class OutputError(RuntimeErrorBase):
    """The output cannot be written (a folder, a missing or read-only folder, an existing file)."""

    exit_code = EXIT_OUTPUT
