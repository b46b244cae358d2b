"""The benchmark registry: where the four public datasets come from and how they are verified.

A dataset is looked up in this order: a local directory (``data_dir`` or ``$ADAREC_DATA_DIR``),
then the cache (``$ADAREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/adarec``, else
``~/.cache/adarec``), then a download from the base URL (``base_url`` or ``$ADAREC_BASE_URL``).
Every file, local or downloaded, must match its SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from adarec.data.reader import read_sequences
from adarec.data.sequences import Sequences
from adarec.errors import AdarecError

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/salesforce/ICLRec/master/data/"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DatasetInfo:
    """One registered benchmark file and the statistics it must have (docs/protocol.md#datasets)."""

    name: str
    filename: str
    sha256: str
    users: int
    items: int
    interactions: int


# name, SHA-256 (as in the published SHA256SUMS), users, items, interactions.
_TABLE = (
    ("Beauty", "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
     22_363, 12_101, 198_502),
    ("Sports_and_Outdoors", "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
     35_598, 18_357, 296_337),
    ("Toys_and_Games", "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
     19_412, 11_924, 167_597),
    ("Yelp", "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
     30_431, 20_033, 316_354),
)  # fmt: skip
DATASETS: dict[str, DatasetInfo] = {
    name: DatasetInfo(name, f"{name}.txt", sha, *counts) for name, sha, *counts in _TABLE
}

# Lower-case spellings accepted for each dataset, besides its lower-cased name.
_ALIASES = {
    "sports": "Sports_and_Outdoors",
    "sports_outdoors": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "toys_games": "Toys_and_Games",
}
_LOOKUP = {**{n.lower(): n for n in DATASETS}, **_ALIASES}


def find_dataset(name: str) -> DatasetInfo | None:
    """The registered dataset called ``name`` (case-insensitive, aliases allowed), or None."""
    key = _LOOKUP.get(name.strip().lower().replace("-", "_"))
    return DATASETS[key] if key else None


def get_dataset(name: str) -> DatasetInfo:
    """Like `find_dataset`, but an unknown name raises `AdarecError` listing the known ones."""
    info = find_dataset(name)
    if info is None:
        known = ", ".join(sorted(DATASETS) + sorted(_ALIASES))
        raise AdarecError(f"unknown dataset {name!r}; known datasets: {known}")
    return info


def cache_dir() -> Path:
    """Where downloaded datasets are kept (not created here)."""
    if env := os.environ.get("ADAREC_CACHE_DIR"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "adarec"
    return Path.home() / ".cache" / "adarec"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, info: DatasetInfo) -> bool:
    return sha256_file(path) == info.sha256


def dataset_path(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    base_url: str | None = None,
) -> Path:
    """Path of a verified copy of dataset ``name``: local directory, then cache, then download.

    Raises:
        AdarecError: a local copy fails its checksum, or no copy exists and ``download`` is
            False or the download fails.
    """
    info = get_dataset(name)
    local_dir = data_dir if data_dir is not None else os.environ.get("ADAREC_DATA_DIR")
    if local_dir:
        local = Path(local_dir).expanduser() / info.filename
        if local.is_file():
            if not _verified(local, info):
                raise AdarecError(
                    f"{local} does not match the published {info.name} file (SHA-256 checksum "
                    f"mismatch, expected {info.sha256}); replace it with the original file"
                )
            return local
    cached = cache_dir() / info.filename
    if cached.is_file() and _verified(cached, info):
        return cached
    if not download:
        where = f"{local_dir} or {cached.parent}" if local_dir else str(cached.parent)
        raise AdarecError(
            f"dataset {info.name} is not available locally; put {info.filename} into {where} "
            "or allow the download"
        )
    # A cached file that failed the checksum above is replaced by a fresh download.
    return _fetch(info, base_url)


def download(name: str, *, base_url: str | None = None, force: bool = False) -> Path:
    """Download dataset ``name`` into the cache, verify its SHA-256, and return its path.

    The file is streamed into a temporary file beside the cache entry and only moved into place
    once its checksum matches, so the cache never holds a partial or wrong file. Without
    ``force``, a verified cached copy is returned as is.
    """
    info = get_dataset(name)
    target = cache_dir() / info.filename
    if not force and target.is_file() and _verified(target, info):
        return target
    return _fetch(info, base_url)


def _stream(url: str, out: BinaryIO, label: str) -> str:
    """Copy ``url`` into ``out`` in chunks, with a progress bar; return the hex SHA-256."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as resp:
        size = resp.headers.get("Content-Length")
        total = int(size) if size else None
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _fetch(info: DatasetInfo, base_url: str | None) -> Path:
    target = cache_dir() / info.filename
    base = base_url or os.environ.get("ADAREC_BASE_URL") or DEFAULT_BASE_URL
    url = base.rstrip("/") + "/" + info.filename
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdarecError(f"cannot create the cache directory {target.parent}: {exc}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{info.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                got = _stream(url, out, info.filename)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                is_http = isinstance(exc, urllib.error.HTTPError)
                reason = exc if is_http else getattr(exc, "reason", None) or exc
                raise AdarecError(
                    f"Downloading {info.name} from {url} failed ({reason}); put {info.filename} "
                    f"into {target.parent} by hand, or set ADAREC_DATA_DIR to a directory "
                    "that holds it."
                ) from None
        if got != info.sha256:
            raise AdarecError(
                f"the file downloaded from {url} failed the SHA-256 checksum (got {got}, "
                f"expected {info.sha256}); it was deleted and not cached"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_dataset(
    name_or_path: str | Path,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    base_url: str | None = None,
) -> Sequences:
    """Load a registered dataset by name, or a sequence file by path.

    A registered name (case-insensitive, aliases such as ``sports`` or ``toys``) wins over a
    file of the same name; anything else must be an existing file. (The ``synthetic`` source is
    the caller's business.)
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and find_dataset(text) is not None:
        path = dataset_path(text, data_dir=data_dir, download=download, base_url=base_url)
        return read_sequences(path)
    if Path(text).is_file():
        return read_sequences(text)
    known = ", ".join(sorted(DATASETS) + sorted(_ALIASES))
    raise AdarecError(
        f"{text!r} is neither a known dataset ({known}) nor an existing sequence file"
    )
