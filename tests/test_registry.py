"""The registry against a real HTTP server on 127.0.0.1 (no outside network needed)."""

from __future__ import annotations

import functools
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from adarec.data import registry
from adarec.data.registry import (
    DATASETS,
    cache_dir,
    dataset_path,
    download,
    load_dataset,
    sha256_file,
)
from adarec.errors import AdarecError


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass


@pytest.fixture
def serve():
    """Start a file server on 127.0.0.1 for a directory; yields a function returning its URL."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """A private cache; no local data dir or base URL from the environment."""
    monkeypatch.setenv("ADAREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ADAREC_DATA_DIR", raising=False)
    monkeypatch.delenv("ADAREC_BASE_URL", raising=False)


@pytest.fixture
def served_copy(beauty_file, tmp_path) -> Path:
    """A directory holding a copy of the real Beauty.txt."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copyfile(beauty_file, root / "Beauty.txt")
    return root


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registry_matches_shared_checksums(shared_data_dir):
    sums = dict(
        reversed(line.split()) for line in (shared_data_dir / "SHA256SUMS").read_text().split("\n")
        if line.strip()
    )  # fmt: skip
    assert {info.filename: info.sha256 for info in DATASETS.values()} == sums


def test_download_verifies_and_caches(served_copy, serve, tmp_path, beauty_file):
    url = serve(served_copy)
    path = download("Beauty", base_url=url)
    assert path == tmp_path / "cache" / "Beauty.txt"
    assert sha256_file(path) == DATASETS["Beauty"].sha256
    assert sorted(p.name for p in path.parent.iterdir()) == ["Beauty.txt"]
    # Second call uses the verified cache: the server is not needed any more.
    assert download("Beauty", base_url=f"http://127.0.0.1:{_closed_port()}/") == path
    assert dataset_path("beauty", download=False) == path
    seqs = load_dataset("BEAUTY")
    assert (len(seqs), seqs.n_items, seqs.n_interactions) == (22_363, 12_101, 198_502)


def test_base_url_from_environment(served_copy, serve, monkeypatch):
    monkeypatch.setenv("ADAREC_BASE_URL", serve(served_copy).rstrip("/"))
    assert sha256_file(dataset_path("Beauty")) == DATASETS["Beauty"].sha256


def test_tampered_download_is_refused(served_copy, serve, tmp_path):
    target = served_copy / "Beauty.txt"
    data = bytearray(target.read_bytes())
    data[1000] = ord("7") if data[1000] != ord("7") else ord("8")
    target.write_bytes(bytes(data))
    with pytest.raises(AdarecError, match="checksum") as info:
        download("Beauty", base_url=serve(served_copy))
    assert "deleted" in str(info.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_tampered_cache_is_replaced_by_download(served_copy, serve, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "Beauty.txt").write_text("1 2 3\n")
    path = dataset_path("Beauty", base_url=serve(served_copy))
    assert sha256_file(path) == DATASETS["Beauty"].sha256


def test_unreachable_server_gives_one_sentence(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(AdarecError) as info:
        download("Beauty", base_url=url)
    message = str(info.value)
    assert message.startswith("Downloading Beauty from") and "failed" in message
    assert str(cache_dir()) in message and "ADAREC_DATA_DIR" in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert list((tmp_path / "cache").iterdir()) == []  # no partial file


def test_missing_file_on_server(tmp_path, serve):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdarecError, match="404"):
        download("Yelp", base_url=serve(empty))


def test_data_dir_without_network(shared_data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ADAREC_BASE_URL", f"http://127.0.0.1:{_closed_port()}/")
    monkeypatch.setenv("ADAREC_DATA_DIR", str(shared_data_dir))
    for name in ("Beauty", "sports", "Toys", "yelp"):
        info = registry.get_dataset(name)
        if not (shared_data_dir / info.filename).is_file():
            continue
        assert dataset_path(name) == shared_data_dir / info.filename
    seqs = load_dataset("toys_and_games")
    assert (len(seqs), seqs.n_items, seqs.n_interactions) == (19_412, 11_924, 167_597)
    assert not (tmp_path / "cache").exists()


def test_local_file_with_wrong_checksum(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / "Beauty.txt").write_text("1 2 3\n")
    with pytest.raises(AdarecError, match="checksum mismatch"):
        dataset_path("Beauty", data_dir=local)


def test_not_available_without_download(tmp_path):
    with pytest.raises(AdarecError, match="not available locally"):
        dataset_path("Yelp", download=False)


def test_unknown_name_and_plain_path(tmp_path):
    with pytest.raises(AdarecError, match="known datasets: Beauty, Sports_and_Outdoors"):
        dataset_path("Movies")
    with pytest.raises(AdarecError, match="neither a known dataset"):
        load_dataset("Movies")
    path = tmp_path / "mine.txt"
    path.write_text("1 3 4\n2 4\n")
    assert load_dataset(str(path)).to_lists() == [[3, 4], [4]]
    assert load_dataset(path).n_items == 4


def test_cache_dir_resolution(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("ADAREC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "adarec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "adarec"
