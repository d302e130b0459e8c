"""Errors raised at the tool's boundaries.

Every error a user can cause names where (file, line, field), what was expected and how to fix
it, so a bad row in a million-line file can be found without a debugger.
"""

from __future__ import annotations


class PDSelectError(Exception):
    """Base class: anything the user can act on."""


class ConfigError(PDSelectError):
    """A bad config key or value, raised before any compute starts."""

    def __init__(self, key: str, problem: str, fix: str = ""):
        self.key, self.problem, self.fix = key, problem, fix
        msg = f"config key '{key}': {problem}"
        super().__init__(msg + (f" Fix: {fix}" if fix else ""))


class InputError(PDSelectError):
    """Bad input data that cannot be skipped row by row (the whole file or schema is wrong),
    or a row error when the user asked for strict mode."""

    def __init__(self, path: str, problem: str, *, line: int | None = None,
                 field: str | None = None, expected: str = "", fix: str = ""):
        self.path, self.line, self.field = str(path), line, field
        self.problem, self.expected, self.fix = problem, expected, fix
        where = self.path + (f":{line}" if line is not None else "")
        if field:
            where += f" field '{field}'"
        msg = f"{where}: {problem}"
        if expected:
            msg += f" (expected {expected})"
        if fix:
            msg += f". Fix: {fix}"
        super().__init__(msg)


class StageError(PDSelectError):
    """A pipeline stage cannot run with what the earlier stages produced."""
