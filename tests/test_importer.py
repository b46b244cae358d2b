"""import_log on a hand-made log whose k-core, ordering and id maps are worked out by hand.

The log (k = 2) below, after dropping the row with a missing item:
  round 1 drops user 12 (one row) and items d, e (one row each);
  round 2 drops user 11 (only c left);
  round 3 drops item c (only user 10 left); then users 9, 10 and items a, b are stable.
User 9 has b and a at the same time 15: the original row order (b first) is kept.
Users are numbered by original id (9 -> 1, 10 -> 2, numerically, not as text), items by first
appearance after sorting (b -> 1, a -> 2).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adarec.data.importer import ImportReport, import_log
from adarec.data.reader import read_sequences
from adarec.errors import AdarecError

LOG = """user,item,timestamp,rating
10,a,10,5
10,b,20,4
10,c,30,3
9,b,15,1
9,a,15,1
11,c,1,2
11,d,2,2
12,e,3,1
10,a,40,5
13,,7,1
"""


def _log(tmp_path: Path, text: str = LOG, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _maps(out: Path) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the user and item maps written beside ``out``."""

    def rows(kind: str) -> list[list[str]]:
        text = (out.parent / f"{out.stem}.{kind}_map.tsv").read_text()
        return [line.split("\t") for line in text.split("\n") if line]

    return rows("user"), rows("item")


def test_k_core_cascade_order_and_maps(tmp_path):
    out = tmp_path / "out" / "seqs.txt"
    report = import_log(_log(tmp_path), out, k_core=2)
    assert report == ImportReport(
        rows_read=10, rows_after_dedup=8, users=2, items=2, interactions=4, k_core_rounds=3
    )
    assert out.read_text() == "1 1 2\n2 2 1\n"
    users, items = _maps(out)
    assert users == [["new_id", "original_id"], ["1", "9"], ["2", "10"]]
    assert items == [["new_id", "original_id"], ["1", "b"], ["2", "a"]]
    assert read_sequences(out).n_items == 2


@pytest.mark.parametrize(
    ("dedup", "after", "text"),
    [
        ("first", 8, "1 1 2\n2 2 1\n"),  # user 10 keeps a@10: a b
        ("last", 8, "1 1 2\n2 1 2\n"),  # user 10 keeps a@40: b a
        ("none", 9, "1 1 2\n2 2 1 2\n"),  # user 10: a b a
    ],
)
def test_dedup_modes(tmp_path, dedup, after, text):
    out = tmp_path / "seqs.txt"
    report = import_log(_log(tmp_path), out, k_core=2, dedup=dedup)
    assert report.rows_after_dedup == after
    assert out.read_text() == text


def test_equal_timestamps_keep_row_order(tmp_path):
    # Swap the two rows of user 9 (same time 15): the output order follows.
    swapped = LOG.replace("9,b,15,1\n9,a,15,1\n", "9,a,15,1\n9,b,15,1\n")
    out = tmp_path / "seqs.txt"
    import_log(_log(tmp_path, swapped), out, k_core=2)
    assert out.read_text() == "1 1 2\n2 1 2\n"  # a first now, so a -> 1, b -> 2
    assert _maps(out)[1][1:] == [["1", "a"], ["2", "b"]]


def test_no_k_core_keeps_everything(tmp_path):
    out = tmp_path / "seqs.txt"
    report = import_log(_log(tmp_path), out, k_core=0, dedup="none")
    assert (report.users, report.items, report.interactions) == (4, 5, 9)
    assert report.k_core_rounds == 0
    # Users 9, 10, 11, 12; items in order of first appearance: b a c d e.
    assert out.read_text() == "1 1 2\n2 2 1 3 2\n3 3 4\n4 5\n"


def test_tsv_with_custom_columns(tmp_path):
    tsv = LOG.replace(",", "\t").replace("user\titem\ttimestamp", "uid\tiid\tts")
    for name in ("log.tsv", "log.txt"):
        out = tmp_path / "seqs.txt"
        report = import_log(
            _log(tmp_path, tsv, name), out, user_col="uid", item_col="iid", time_col="ts",
            k_core=2,
        )  # fmt: skip
        assert report.interactions == 4
        assert out.read_text() == "1 1 2\n2 2 1\n"


def test_explicit_separator_and_dates(tmp_path):
    text = "user;item;timestamp\nx;p;2020-01-03\nx;q;2020-01-01\ny;p;2020-01-02\n"
    out = tmp_path / "seqs.txt"
    import_log(_log(tmp_path, text, "log.dat"), out, sep=";", k_core=1)
    assert out.read_text() == "1 1 2\n2 2\n"  # x: q then p
    assert _maps(out)[1][1:] == [["1", "q"], ["2", "p"]]


def test_missing_column_lists_available(tmp_path):
    with pytest.raises(
        AdarecError, match=r"missing column\(s\) time.*user, item, timestamp, rating"
    ):
        import_log(_log(tmp_path), tmp_path / "seqs.txt", time_col="time")


def test_nothing_survives(tmp_path):
    with pytest.raises(AdarecError, match="no interactions survive the 5-core"):
        import_log(_log(tmp_path), tmp_path / "seqs.txt", k_core=5)
    assert not (tmp_path / "seqs.txt").exists()


def test_bad_arguments_and_files(tmp_path):
    with pytest.raises(AdarecError, match="dedup"):
        import_log(_log(tmp_path), tmp_path / "s.txt", dedup="keep")
    with pytest.raises(AdarecError, match="file not found"):
        import_log(tmp_path / "none.csv", tmp_path / "s.txt")
    with pytest.raises(AdarecError, match="separator"):
        import_log(_log(tmp_path, name="log.dat"), tmp_path / "s.txt")


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "log.parquet"
    pd.read_csv(_log(tmp_path), dtype={"user": "Int64"}).to_parquet(path)
    out = tmp_path / "seqs.txt"
    import_log(path, out, k_core=2)
    assert out.read_text() == "1 1 2\n2 2 1\n"
    assert _maps(out)[0][1:] == [["1", "9"], ["2", "10"]]


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    path = tmp_path / "log.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(AdarecError, match=r"pip install adarec\[parquet\]"):
        import_log(path, tmp_path / "seqs.txt")
