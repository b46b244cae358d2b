"""Turn a raw interaction log (CSV, TSV or Parquet) into a sequence file.

Steps: read, check columns, drop rows with missing values, de-duplicate user-item pairs,
iterative k-core filter, chronological sort per user, remap ids, write the sequence file and
two id maps (``<stem>.user_map.tsv`` and ``<stem>.item_map.tsv``, columns ``new_id`` and
``original_id``) beside it.

Id choices: original ids are kept as text, exactly as written. Users are numbered 1..U in
order of their original id (numerically when every user id is an integer, else as text);
items are numbered 1..N in order of first appearance in the sorted log (user by user, each
chronologically), so the numbering is deterministic and does not depend on the input's order
beyond the tie-break. Interactions with equal timestamps keep their original row order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adarec.data.reader import write_sequences
from adarec.data.sequences import Sequences
from adarec.errors import AdarecError

_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
_ROW = "__row"  # original row position, the tie-break for equal timestamps


@dataclass(frozen=True)
class ImportReport:
    """What `import_log` kept. ``k_core_rounds`` counts the filter passes that removed rows."""

    rows_read: int
    rows_after_dedup: int
    users: int
    items: int
    interactions: int
    k_core_rounds: int


def _read(path: Path, sep: str | None, id_cols: list[str]) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if path.is_dir():
        raise AdarecError(f"{path}: is a folder; give the interaction log file")
    if not path.is_file():
        raise AdarecError(f"{path}: file not found")
    try:
        if suffix == ".parquet" and sep is None:
            try:
                df = pd.read_parquet(path)
            except ImportError:
                raise AdarecError(
                    "reading Parquet needs pyarrow: pip install adarec[parquet]"
                ) from None
            return df
        sep = sep if sep is not None else _SEPARATORS.get(suffix)
        if sep is None:
            raise AdarecError(
                f"{path}: cannot tell the column separator from the suffix {suffix!r}; "
                "pass sep (e.g. ',' or '\\t')"
            )
        header = pd.read_csv(path, sep=sep, nrows=0).columns
        return pd.read_csv(path, sep=sep, dtype={c: str for c in id_cols if c in header})
    except AdarecError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AdarecError(f"{path}: cannot read the log ({exc})") from None


def _map_path(out_path: Path, kind: str) -> Path:
    return out_path.with_name(f"{out_path.stem}.{kind}_map.tsv")


def _check_outputs(log: Path, out_path: Path) -> None:
    """The sequence file and its id maps must be writable files, none of them the log."""
    if out_path.is_dir():  # also "" and "."
        raise AdarecError(f"{out_path} is a folder; give the sequence file's name")
    for target in (out_path, _map_path(out_path, "user"), _map_path(out_path, "item")):
        if target.is_dir():
            raise AdarecError(f"{target} is a folder; give the sequence file's name")
        if target.exists() and target.resolve() == log.resolve():
            raise AdarecError(f"{target} is the input log; writing it would destroy the log; "
                              "give another output name")


def _as_text(col: pd.Series) -> pd.Series:
    """Ids as text; whole floats (an integer column that held missing values) lose '.0'."""
    if pd.api.types.is_float_dtype(col) and (col == col.round()).all():
        col = col.astype(np.int64)
    return col.astype(str)


def _k_core(df: pd.DataFrame, user_col: str, item_col: str, k: int) -> tuple[pd.DataFrame, int]:
    """Drop users and items with fewer than ``k`` interactions until none is left to drop."""
    rounds = 0
    while k > 1 and len(df):
        users_ok = df.groupby(user_col)[user_col].transform("size") >= k
        items_ok = df.groupby(item_col)[item_col].transform("size") >= k
        keep = users_ok & items_ok
        if keep.all():
            break
        df = df[keep]
        rounds += 1
    return df, rounds


def import_log(
    path: str | Path,
    out_path: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    sep: str | None = None,
    dedup: str = "first",
    k_core: int = 5,
) -> ImportReport:
    """Convert an interaction log into a sequence file at ``out_path`` (see module docstring).

    Args:
        path: the log; ``.csv`` (comma), ``.tsv``/``.txt`` (tab) or ``.parquet``.
        out_path: the sequence file to write; the id maps go beside it.
        user_col, item_col, time_col: column names in the log.
        sep: column separator; ``None`` infers it from the suffix.
        dedup: for repeated user-item pairs keep the ``"first"`` (earliest) or ``"last"``
            (latest) interaction, or ``"none"`` to keep all of them.
        k_core: keep only users and items with at least this many interactions (iterated until
            stable); 0 or 1 disables the filter.
    """
    path, out_path = Path(path), Path(out_path)
    if dedup not in ("first", "last", "none"):
        raise AdarecError(f"dedup must be 'first', 'last' or 'none', got {dedup!r}")
    if k_core < 0:
        raise AdarecError(f"k_core must be >= 0, got {k_core}")
    columns = {"user": user_col, "item": item_col, "time": time_col}
    if len(set(columns.values())) < len(columns):
        raise AdarecError(
            "the user, item and time columns must be three different columns, got "
            + ", ".join(f"{k} {v!r}" for k, v in columns.items())
        )
    _check_outputs(path, out_path)
    df = _read(path, sep, [user_col, item_col])
    missing = [c for c in (user_col, item_col, time_col) if c not in df.columns]
    if missing:
        raise AdarecError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"available columns: {', '.join(map(str, df.columns))}"
        )
    rows_read = len(df)
    df = df[[user_col, item_col, time_col]].assign(**{_ROW: np.arange(rows_read)}).dropna()
    df = df.assign(**{c: _as_text(df[c]) for c in (user_col, item_col)})
    if not pd.api.types.is_numeric_dtype(df[time_col]):
        try:
            df = df.assign(**{time_col: pd.to_datetime(df[time_col])})
        except (ValueError, TypeError):
            raise AdarecError(f"{path}: column {time_col!r} must hold numbers or dates") from None

    if dedup != "none":
        df = df.sort_values([time_col, _ROW]).drop_duplicates([user_col, item_col], keep=dedup)
    rows_after_dedup = len(df)
    df, rounds = _k_core(df, user_col, item_col, k_core)
    if df.empty:
        raise AdarecError(
            f"{path}: no interactions survive the {k_core}-core filter "
            f"({rows_after_dedup} rows before it); try a smaller k_core"
        )

    user_key = pd.to_numeric(df[user_col], errors="coerce")
    if user_key.isna().any():
        user_key = df[user_col]
    # The user id text breaks ties between ids of equal value ("01", "1") so that each user's
    # rows stay together; the row position makes equal timestamps keep their original order.
    df = df.assign(__user_key=user_key).sort_values(
        ["__user_key", user_col, time_col, _ROW], kind="stable"
    )
    user_codes, user_orig = pd.factorize(df[user_col], sort=False)
    item_codes, item_orig = pd.factorize(df[item_col], sort=False)

    lengths = np.bincount(user_codes, minlength=len(user_orig))
    offsets = np.zeros(len(user_orig) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    seqs = Sequences(
        user_ids=np.arange(1, len(user_orig) + 1, dtype=np.int64),
        items=item_codes.astype(np.int64) + 1,
        offsets=offsets,
        n_items=len(item_orig),
        source=str(path),
    )
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_sequences(seqs, out_path)
        for kind, orig in (("user", user_orig), ("item", item_orig)):
            frame = pd.DataFrame({"new_id": np.arange(1, len(orig) + 1), "original_id": orig})
            frame.to_csv(_map_path(out_path, kind), sep="\t", index=False)
    except OSError as exc:
        raise AdarecError(f"cannot write {out_path} or its id maps ({exc.strerror})") from None
    return ImportReport(
        rows_read=rows_read,
        rows_after_dedup=rows_after_dedup,
        users=len(user_orig),
        items=len(item_orig),
        interactions=int(offsets[-1]),
        k_core_rounds=rounds,
    )
