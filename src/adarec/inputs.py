"""Checks on what a user hands the CLI: text files, output paths, run names, option choices.

Each check raises `AdarecError` with one sentence naming the path or option and what to do,
so the CLI prints one ``error:`` line instead of a traceback from deep inside a library.
"""

from __future__ import annotations

import codecs
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from adarec.errors import AdarecError

# Byte-order marks of encodings we refuse (longest first: the UTF-32 LE mark starts with
# the UTF-16 LE one).
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)
INCOMPLETE = "INCOMPLETE"
"""Marker file of a run directory whose run has not finished (failed, killed or running)."""


def decode_text(data: bytes, where: str | Path) -> str:
    """``data`` as UTF-8 text. A UTF-8 byte-order mark is dropped (it is harmless); UTF-16 or
    UTF-32 text and binary files are refused with a sentence saying which problem it is."""
    for bom, name in _FOREIGN_BOMS:
        if data.startswith(bom):
            raise AdarecError(
                f"{where}: the file is {name} text (it starts with a {name} byte-order mark); "
                f"save it as UTF-8, e.g. iconv -f {name} -t UTF-8 FILE > NEW"
            )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdarecError(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "is it a binary file?"
        ) from None
    if "\x00" in text:
        raise AdarecError(
            f"{where}: holds NUL bytes, so it is binary or UTF-16 without a byte-order mark; "
            "save it as UTF-8 text"
        )
    return text


def read_text_file(path: str | Path, what: str = "file") -> str:
    """Read ``path`` as UTF-8 text (see `decode_text`), with one clear error per failure."""
    path = Path(path)
    if path.is_dir():
        raise AdarecError(f"{path}: is a folder, not a {what}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdarecError(f"{path}: file not found") from None
    except OSError as exc:
        raise AdarecError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    return decode_text(data, path)


def check_choice(option: str, value: str | None, allowed: Sequence[str]) -> None:
    """``value`` (when given) must be one of ``allowed``."""
    if value is not None and value not in allowed:
        raise AdarecError(f"{option} must be one of {', '.join(allowed)}; got {value!r}")


def check_run_name(name: str) -> None:
    """A run name is one folder name: no separators, not ``.`` or ``..``, not hidden."""
    bad = (not name or name in (".", "..") or name.startswith(".") or "/" in name
           or "\\" in name or "\x00" in name or os.sep in name)
    if bad:
        raise AdarecError(
            f"--run-name must be a plain folder name (no '/', not '.' or '..', not starting "
            f"with '.'), got {name!r}; use --output-dir to choose where runs go"
        )


def make_run_dir(root: str | Path, base: str, *, command: str | None = None) -> Path:
    """Create a fresh run directory ``root/base`` (``base-2``, ... if taken) and mark it
    `INCOMPLETE` until the run finishes (`mark_complete`)."""
    check_run_name(base)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise AdarecError(f"--output-dir {root} is a file, not a folder")
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    try:
        path.mkdir(parents=True)
        (path / INCOMPLETE).write_text(
            f"started {time.strftime('%Y-%m-%d %H:%M:%S')}"
            + (f" by: {command}" if command else "")
            + "\nThis run has not finished (it is running, failed or was killed); "
            "results.json is written and this file removed when it does.\n"
        )
    except OSError as exc:
        raise AdarecError(
            f"cannot create the run directory {path} ({exc.strerror}); "
            "choose a writable --output-dir"
        ) from None
    return path


def mark_complete(run_dir: Path) -> None:
    """The run in ``run_dir`` finished: drop its `INCOMPLETE` marker."""
    (Path(run_dir) / INCOMPLETE).unlink(missing_ok=True)


def is_incomplete(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that has not finished."""
    return (Path(run_dir) / INCOMPLETE).is_file()


def check_output_file(path: Path, *, option: str, inputs: Iterable[Path] = ()) -> None:
    """``path`` can be written as a file: not a folder, its folder exists, and it is none of
    ``inputs`` (writing would destroy what is being read)."""
    if path.is_dir():
        raise AdarecError(f"{option} {path} is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise AdarecError(f"{option} {path}: the folder {parent} does not exist")
    for source in inputs:
        if path.resolve() == Path(source).resolve():
            raise AdarecError(f"{option} {path} is the input file; writing it would destroy "
                              "the input; give another file name")


def absolute(path: str | Path | None) -> str | None:
    """``path`` made absolute (so a run can be evaluated from any directory); None stays."""
    return None if path is None else str(Path(path).expanduser().absolute())
