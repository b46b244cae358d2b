"""Read and write sequence files: one user per line, ``user_id item_1 item_2 ...``.

Items are positive integers in chronological order, separated by whitespace; blank lines are
skipped. Reading parses the whole file with one numpy conversion; the slow per-token check
only runs to locate the offending line once something is known to be wrong.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from adarec.data.sequences import Sequences
from adarec.errors import AdarecError
from adarec.inputs import decode_text

# Anything other than digits, '-' and whitespace cannot be part of a valid file. numpy's
# string-to-int conversion is more lenient than the format ('+5', '1_000'), so check first.
_BAD_CHAR = re.compile(r"[^0-9\s-]")
_INT_TOKEN = re.compile(r"-?[0-9]+")
_INT64 = np.iinfo(np.int64)


def read_sequences(path: str | Path) -> Sequences:
    """Read a sequence file into `Sequences` (user ids as written, items as written).

    Raises:
        AdarecError: the file is missing or unreadable, holds no users, or a line is malformed
            (non-integer token, item id <= 0, user without items, duplicate user id); the
            message names the file and the 1-based line number. Text must be UTF-8 (a
            UTF-8 byte-order mark is allowed); UTF-16/32 or binary files are refused.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdarecError(f"{path}: file not found") from None
    except OSError as exc:
        raise AdarecError(f"{path}: cannot read the file ({exc})") from None
    text = decode_text(data, path)  # UTF-8; a UTF-8 BOM is dropped, UTF-16 is refused

    # Split on '\n' only, so line numbers match what an editor shows.
    line_no: list[int] = []
    tokens: list[list[str]] = []
    for no, line in enumerate(text.split("\n"), start=1):
        toks = line.split()
        if toks:
            line_no.append(no)
            tokens.append(toks)
    if not tokens:
        raise AdarecError(f"{path}: the file holds no users (it is empty or blank)")

    counts = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    flat = np.empty(0, dtype=np.int64)
    ok = _BAD_CHAR.search(text) is None
    if ok:
        try:
            flat = np.array(list(itertools.chain.from_iterable(tokens)), dtype=np.int64)
        except (ValueError, OverflowError):
            ok = False
    if not ok:
        _raise_bad_token(path, tokens, line_no)

    starts = np.zeros(len(tokens), dtype=np.int64)  # (U,) position of each user id in `flat`
    np.cumsum(counts[:-1], out=starts[1:])
    empty = np.nonzero(counts < 2)[0]
    if empty.size:
        raise AdarecError(f"{path}, line {line_no[empty[0]]}: user has no items")
    user_ids = flat[starts]
    is_item = np.ones(flat.size, dtype=bool)
    is_item[starts] = False
    items = flat[is_item]

    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(counts - 1, out=offsets[1:])
    bad = np.nonzero(items <= 0)[0]
    if bad.size:
        # Item k of the flat item list belongs to the user whose offset range holds it.
        row = int(np.searchsorted(offsets, bad[0], side="right")) - 1
        raise AdarecError(
            f"{path}, line {line_no[row]}: item id {int(items[bad[0]])} is not positive "
            "(item ids start at 1; 0 is reserved for padding)"
        )
    _check_unique_users(path, user_ids, line_no)
    return Sequences(
        user_ids=user_ids,
        items=items,
        offsets=offsets,
        n_items=int(items.max()),
        source=str(path),
    )


def _raise_bad_token(path: Path, tokens: list[list[str]], line_no: list[int]) -> None:
    """Find the first token that is not an int64 integer and raise for its line."""
    for toks, no in zip(tokens, line_no, strict=True):
        for tok in toks:
            if not _INT_TOKEN.fullmatch(tok) or not _INT64.min <= int(tok) <= _INT64.max:
                raise AdarecError(f"{path}, line {no}: {tok!r} is not an integer")
    raise AdarecError(f"{path}: cannot parse the file as integers")  # not reached in practice


def _check_unique_users(path: Path, user_ids: np.ndarray, line_no: list[int]) -> None:
    order = np.argsort(user_ids, kind="stable")
    sorted_ids = user_ids[order]
    dup = np.nonzero(sorted_ids[1:] == sorted_ids[:-1])[0]
    if not dup.size:
        return
    # Among all repeats, report the one whose second occurrence comes first in the file.
    second = order[dup + 1]
    k = int(np.argmin(second))
    # The stable sort keeps equal ids in file order, so the pair's first row is the earliest.
    first_row, second_row = int(order[dup[k]]), int(second[k])
    raise AdarecError(
        f"{path}, line {line_no[second_row]}: duplicate user id {int(user_ids[second_row])} "
        f"(first seen on line {line_no[first_row]})"
    )


def write_sequences(seqs: Sequences, path: str | Path) -> None:
    """Write ``seqs`` in the sequence-file format, atomically (temp file + ``os.replace``)."""
    path = Path(path)
    users = seqs.user_ids.tolist()
    items = [str(i) for i in seqs.items.tolist()]
    bounds = seqs.offsets.tolist()
    lines = (f"{u} {' '.join(items[bounds[k] : bounds[k + 1]])}\n" for k, u in enumerate(users))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
