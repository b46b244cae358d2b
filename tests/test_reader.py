"""read_sequences / write_sequences: round trip, and every malformed case names file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adarec.data.reader import read_sequences, write_sequences
from adarec.data.sequences import Sequences
from adarec.data.stats import describe
from adarec.errors import AdarecError


def _write(tmp_path: Path, text: str, name: str = "seqs.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_good_file_with_blank_lines_and_odd_spacing(tmp_path):
    path = _write(tmp_path, "7 1 2 3\n\n  3\t4 5   6 \r\n9 2\n\n")
    seqs = read_sequences(path)
    assert seqs.user_ids.tolist() == [7, 3, 9]
    assert seqs.to_lists() == [[1, 2, 3], [4, 5, 6], [2]]
    assert seqs.offsets.tolist() == [0, 3, 6, 7]
    assert seqs.n_items == 6
    assert seqs.items.dtype == np.int64
    assert seqs.source == str(path)


def test_round_trip(tmp_path):
    original = Sequences.from_lists([[5, 1, 5], [2, 3], [9]], user_ids=[10, 2, 33])
    path = tmp_path / "out.txt"
    write_sequences(original, path)
    assert path.read_text() == "10 5 1 5\n2 2 3\n33 9\n"
    again = read_sequences(path)
    assert again.user_ids.tolist() == [10, 2, 33]
    assert again.to_lists() == original.to_lists()
    assert again.n_items == 9
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_write_replaces_existing_file(tmp_path):
    path = _write(tmp_path, "old content\n", "out.txt")
    write_sequences(Sequences.from_lists([[1]]), path)
    assert path.read_text() == "1 1\n"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1 2 3\n2 4 x5\n", 2, "'x5' is not an integer"),
        ("1 2 3\n\n2 4 5.0\n", 3, "'5.0' is not an integer"),
        ("1 2 +3\n", 1, "'+3' is not an integer"),
        ("1 2 3\nu2 4 5\n", 2, "'u2' is not an integer"),
        ("1 2 3\n2 4 1-2\n", 2, "'1-2' is not an integer"),
        ("1 2 3\n2 4 99999999999999999999\n", 2, "not an integer"),
        ("1 2 3\n2 4 0 5\n", 2, "item id 0 is not positive"),
        ("1 2 3\n\n\n2 4 5\n3 -1\n", 5, "item id -1 is not positive"),
        ("1 2 3\n2\n3 4\n", 2, "user has no items"),
        ("1 2 3\n2 4\n3 5\n2 6\n1 7\n", 4, "duplicate user id 2 (first seen on line 2)"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, words):
    path = _write(tmp_path, text, "bad_file.txt")
    with pytest.raises(AdarecError) as info:
        read_sequences(path)
    message = str(info.value)
    assert "bad_file.txt" in message
    assert f"line {line}:" in message
    assert words in message


@pytest.mark.parametrize("text", ["", "\n\n   \n"])
def test_empty_file(tmp_path, text):
    path = _write(tmp_path, text, "empty.txt")
    with pytest.raises(AdarecError, match=r"empty\.txt.*no users"):
        read_sequences(path)


def test_missing_and_unreadable_file(tmp_path):
    with pytest.raises(AdarecError, match=r"nope\.txt: file not found"):
        read_sequences(tmp_path / "nope.txt")
    with pytest.raises(AdarecError, match="cannot read"):
        read_sequences(tmp_path)  # a directory
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"1 2 \xff\xfe\n")
    with pytest.raises(AdarecError, match=r"binary\.txt"):
        read_sequences(binary)


def test_describe():
    seqs = Sequences.from_lists([[1, 2, 3, 4, 5], list(range(1, 12)), list(range(1, 25))])
    stats = describe(seqs)
    assert stats["users"] == 3
    assert stats["items"] == 24
    assert stats["interactions"] == 40
    assert stats["avg_length"] == pytest.approx(40 / 3)
    assert (stats["length_min"], stats["length_median"], stats["length_max"]) == (5, 11.0, 24)
    assert stats["length_p25"] == 8.0
    assert (stats["users_len_le5"], stats["users_len_le10"]) == (1, 1)
    assert (stats["users_len_le20"], stats["users_len_gt20"]) == (2, 1)


def test_real_benchmark_round_trip(beauty_file, tmp_path):
    seqs = read_sequences(beauty_file)
    out = tmp_path / "Beauty.txt"
    write_sequences(seqs, out)
    assert out.read_bytes() == beauty_file.read_bytes()
