"""Run the `adarec` entry point in this process (no torch import per command), as a user would
see it: exit code, stdout, stderr. Any exception that escapes `adarec.cli.main` other than
its own ``sys.exit`` is a traceback the user would have seen, so it propagates to the test.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from adarec.cli import main


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: object) -> Outcome:
    """``adarec ARGS...`` in-process; returns its exit code and output."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["adarec", *map(str, args)]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return Outcome(code if isinstance(code, int) else (0 if code is None else 1),
                   out.getvalue(), err.getvalue())


def is_user_error(outcome: Outcome) -> bool:
    """Exit 2 with exactly one ``error: ...`` line on stderr (warnings before it allowed)."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return (outcome.code == 2 and len(errors) == 1 and lines[-1] == errors[0]
            and "Traceback" not in outcome.stderr)


def user_error(outcome: Outcome, match: str = "") -> str:
    """Assert a clean user error containing ``match``; return its line."""
    assert is_user_error(outcome), f"exit {outcome.code}\n{outcome.stdout}\n{outcome.stderr}"
    line = outcome.stderr.strip().splitlines()[-1]
    assert match in line, line
    return line


def ok(outcome: Outcome) -> str:
    """Assert success without a traceback; return stdout."""
    assert outcome.code == 0, f"exit {outcome.code}\n{outcome.stdout}\n{outcome.stderr}"
    assert "Traceback" not in outcome.stderr
    return outcome.stdout


def write_sequences_text(path: Path, rows: list[list[int]]) -> Path:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in rows))
    return path
