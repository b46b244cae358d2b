"""Item ids as clients send them: the model's (1..n_items) or, through the item map that
`adarec data import` wrote, the log's original ids (docs/serving.md#item-ids)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from adarec.errors import AdarecError

ItemId = int | str


class BadRequest(ValueError):
    """A request the server cannot answer as asked; its message goes back to the client."""


def item_map_path(data_file: Path) -> Path:
    """Where `adarec data import` put the item map of ``data_file`` (``<stem>.item_map.tsv``
    beside it)."""
    return data_file.with_name(f"{data_file.stem}.item_map.tsv")


class ItemIds:
    """Client ids <-> model ids. Without a map the client's ids are the model's integers;
    with one they are the original ids, compared as text (a JSON 42 is the id "42")."""

    def __init__(self, n_items: int, original: Sequence[str] | None = None,
                 source: Path | None = None) -> None:
        if original is not None and len(original) != n_items:
            raise AdarecError(f"{source}: {len(original)} items, but the model knows {n_items}")
        self.n_items, self.source = n_items, source
        self.original = None if original is None else np.asarray(original, dtype=object)
        self.index = None if original is None else {o: i + 1 for i, o in enumerate(original)}
        if self.index is not None and len(self.index) != n_items:
            raise AdarecError(f"{source}: an original id appears twice")

    @property
    def kind(self) -> str:
        return "model" if self.original is None else "original"

    def to_model(self, ids: Sequence[ItemId]) -> np.ndarray:
        """(L,) int64 model ids of a client's ``ids``; unknown ids are a `BadRequest`."""
        if self.index is None:
            bad = [i for i in ids if isinstance(i, str) or not 1 <= i <= self.n_items]
            if bad:
                raise BadRequest(f"unknown item id {bad[0]!r}: items are the model's integers "
                                 f"1..{self.n_items}")
            return np.asarray(ids, dtype=np.int64)
        keys = [str(i) for i in ids]
        unknown = [k for k in keys if k not in self.index]
        if unknown:
            raise BadRequest(f"unknown item id {unknown[0]!r}: not in the item map "
                             f"({len(unknown)} unknown in this history)")
        return np.fromiter((self.index[k] for k in keys), dtype=np.int64, count=len(keys))

    def to_client(self, items: np.ndarray) -> list[ItemId]:
        """Model ids -> the client's ids (ints, or original ids as text)."""
        if self.original is None:
            return items.tolist()
        return self.original[items - 1].tolist()


def read_item_map(path: Path, n_items: int) -> ItemIds:
    """The ``new_id``/``original_id`` TSV of `adarec data import`; ``new_id`` must be 1..N."""
    if not path.is_file():
        raise AdarecError(f"no item map at {path}")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AdarecError(f"{path}: cannot read the item map ({exc})") from None
    if list(df.columns) != ["new_id", "original_id"]:
        raise AdarecError(f"{path}: expected the columns new_id and original_id")
    expected = [str(i) for i in range(1, len(df) + 1)]
    if df["new_id"].tolist() != expected:
        raise AdarecError(f"{path}: new_id must run 1..{len(df)} in order")
    return ItemIds(n_items, df["original_id"].tolist(), source=path)
