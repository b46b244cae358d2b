"""`adarec serve` over real HTTP: a uvicorn server on a free loopback port, every endpoint,
every kind of bad request (and the server still serving after them), the answers against
`adarec recommend`'s, both engines, micro-batching, and the id maps of `adarec data import`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from serving import free_port, live_server, tiny_checkpoint  # noqa: E402

from adarec.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from adarec.data.importer import import_log  # noqa: E402
from adarec.data.sequences import Sequences  # noqa: E402
from adarec.errors import AdarecError  # noqa: E402
from adarec.recommend import recommend as reference_top_k  # noqa: E402
from adarec.serve.app import Limits, create_app  # noqa: E402
from adarec.serve.loading import load_recommender  # noqa: E402

N_ITEMS, MAX_LEN = 40, 8
LIMITS = Limits(max_body_bytes=4096, max_batch=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("run"), n_items=N_ITEMS, max_len=MAX_LEN,
                           commit="abc1234")


@pytest.fixture(scope="module")
def url(checkpoint):
    with live_server(create_app(load_recommender(checkpoint.parent), LIMITS)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


def _top(checkpoint: Path, histories: list[list[int]], k: int, exclude: bool):
    """`adarec recommend`'s answers: the reference."""
    model, _, info = model_from_checkpoint(load_checkpoint(checkpoint))
    items, scores = reference_top_k(model, Sequences.from_lists(histories), k=k,
                                    n_items=info.n_items, max_len=info.max_len,
                                    exclude_history=exclude)
    return items.tolist(), scores.tolist()


HISTORIES = [[1, 2, 3], [5], [7, 7, 9, 30, 31, 2, 40, 11], [12, 13]]


def test_health_and_metadata(client):
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert (meta["model"], meta["n_items"], meta["max_len"]) == ("sasrec", N_ITEMS, MAX_LEN)
    assert (meta["item_ids"], meta["engine"], meta["commit"]) == ("model", "torch", "abc1234")
    assert meta["epoch"] == 3 and meta["config"]["hidden_size"] == 16
    assert meta["limits"] == {"max_body_bytes": 4096, "max_batch": 4, "gather": True,
                              "wait_ms": 0.0, "max_queue": 32, "retry_after_s": 1}


@pytest.mark.parametrize("exclude", [True, False])
def test_recommend_gives_the_recommend_commands_answers(client, checkpoint, exclude):
    items, scores = _top(checkpoint, HISTORIES, 5, exclude)
    for history, want_items, want_scores in zip(HISTORIES, items, scores, strict=True):
        got = client.post("/recommend", json={"history": history, "k": 5,
                                              "exclude_history": exclude}).json()
        assert got["items"] == want_items
        np.testing.assert_allclose(got["scores"], want_scores, rtol=1e-5, atol=1e-6)
        assert got["scores"] == sorted(got["scores"], reverse=True)
        if exclude:
            assert not set(got["items"]) & set(history)


def test_batch_answers_each_history_as_the_single_endpoint_does(client):
    batch = client.post("/recommend/batch", json={"histories": HISTORIES, "k": 3}).json()
    singles = [client.post("/recommend", json={"history": h, "k": 3}).json()
               for h in HISTORIES]
    assert [r["items"] for r in batch["results"]] == [s["items"] for s in singles]
    for r, s in zip(batch["results"], singles, strict=True):
        np.testing.assert_allclose(r["scores"], s["scores"], rtol=1e-5, atol=1e-6)


def test_a_long_history_uses_its_most_recent_items(client):
    rng = np.random.default_rng(0)
    history = rng.integers(1, N_ITEMS + 1, 3 * MAX_LEN).tolist()
    whole = client.post("/recommend", json={"history": history, "exclude_history": False})
    recent = client.post("/recommend", json={"history": history[-MAX_LEN:],
                                             "exclude_history": False})
    assert whole.status_code == 200 and whole.json() == recent.json()
    # Excluding leaves out every item of the whole history, not only the recent part.
    assert not set(client.post("/recommend", json={"history": history, "k": 5}).json()
                   ["items"]) & set(history)


def test_fewer_items_than_k_when_the_history_leaves_fewer(client):
    history = list(range(1, N_ITEMS))  # all but item N_ITEMS
    got = client.post("/recommend", json={"history": history, "k": 10}).json()
    assert got["items"] == [N_ITEMS] and len(got["scores"]) == 1
    assert client.post("/recommend", json={"history": history, "k": N_ITEMS}).status_code == 200


def _chunks(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start:start + size]


JSON = {"content-type": "application/json"}
BIG = json.dumps({"history": [1] * 3000}).encode()
BAD = {
    # name: (method, path, body, headers, status, words in the error message)
    "malformed JSON": ("POST", "/recommend", b'{"history": [1, 2', JSON, 422, "malformed JSON"),
    "not JSON content": ("POST", "/recommend", b'{"history": [1]}',
                         {"content-type": "text/plain"}, 415, "Content-Type: application/json"),
    "no body": ("POST", "/recommend", b"", JSON, 422, "body"),
    "no content type, bad JSON": ("POST", "/recommend", b'{"history": [1', {}, 422,
                                  "is it JSON?"),
    "body not an object": ("POST", "/recommend", b"[1, 2]", JSON, 422,
                           "the body must be a JSON object"),
    "missing history": ("POST", "/recommend", b'{"k": 3}', JSON, 422, "history"),
    "history not a list": ("POST", "/recommend", b'{"history": 5}', JSON, 422, "history"),
    "text item without an item map": ("POST", "/recommend", b'{"history": [1, "a"]}', JSON,
                                      422, "unknown item id 'a'"),
    "float item": ("POST", "/recommend", b'{"history": [1.5]}', JSON, 422, "integer or a string"),
    "whole float item": ("POST", "/recommend", b'{"history": [2.0]}', JSON, 422,
                         "integer or a string"),
    "bool item": ("POST", "/recommend", b'{"history": [true]}', JSON, 422, "integer or a string"),
    "null item": ("POST", "/recommend", b'{"history": [null]}', JSON, 422, "integer or a string"),
    "empty history": ("POST", "/recommend", b'{"history": []}', JSON, 422, "history"),
    "item 0 (padding)": ("POST", "/recommend", b'{"history": [0]}', JSON, 422, "unknown item id 0"),
    "item past the catalogue": ("POST", "/recommend", b'{"history": [3, 41]}', JSON, 422,
                                "unknown item id 41"),
    "negative item": ("POST", "/recommend", b'{"history": [-1]}', JSON, 422, "unknown item id -1"),
    "huge item": ("POST", "/recommend", b'{"history": [123456789012345678901234567890]}', JSON,
                  422, "unknown item id"),
    "k = 0": ("POST", "/recommend", b'{"history": [1], "k": 0}', JSON, 422, "k"),
    "k < 0": ("POST", "/recommend", b'{"history": [1], "k": -3}', JSON, 422, "k"),
    "k as text": ("POST", "/recommend", b'{"history": [1], "k": "3"}', JSON, 422, "k"),
    "k as a float": ("POST", "/recommend", b'{"history": [1], "k": 2.5}', JSON, 422, "k"),
    "k over the catalogue": ("POST", "/recommend", b'{"history": [1], "k": 41}', JSON, 422,
                             "k must be in 1..40"),
    "unknown field": ("POST", "/recommend", b'{"history": [1], "exclude": false}', JSON, 422,
                      "exclude"),
    "exclude_history as text": ("POST", "/recommend", b'{"history": [1], "exclude_history": '
                                b'"no"}', JSON, 422, "exclude_history"),
    "batch: no histories": ("POST", "/recommend/batch", b'{"histories": []}', JSON, 422,
                            "histories"),
    "batch: an empty history": ("POST", "/recommend/batch", b'{"histories": [[1], []]}', JSON,
                                422, "histories[1]: the history is empty"),
    "batch: an unknown item": ("POST", "/recommend/batch", b'{"histories": [[1], [2, 99]]}',
                               JSON, 422, "histories[1]: unknown item id 99"),
    "batch: k over the catalogue": ("POST", "/recommend/batch", b'{"histories": [[1]], "k": '
                                    b'1000}', JSON, 422, "k must be in"),
    "batch over the limit": ("POST", "/recommend/batch",
                             json.dumps({"histories": [[1]] * 5}).encode(), JSON, 422,
                             "the limit is 4"),
    "body over the limit": ("POST", "/recommend", BIG, JSON, 413, "over the limit of 4096"),
    "chunked body over the limit": ("POST", "/recommend", "chunked", JSON, 413,
                                    "over the limit of 4096"),
    "wrong method": ("GET", "/recommend", None, {}, 405, "Method Not Allowed"),
    "unknown path": ("GET", "/recommendations", None, {}, 404, "Not Found"),
}


@pytest.fixture(scope="module")
def bad_answers(client) -> dict[str, httpx.Response]:
    answers = {}
    for name, (method, path, body, headers, *_) in BAD.items():
        content = _chunks(BIG) if body == "chunked" else body
        answers[name] = client.request(method, path, content=content, headers=headers)
    return answers


@pytest.mark.parametrize("name", list(BAD))
def test_bad_request_gets_a_clear_4xx(bad_answers, name):
    *_, status, words = BAD[name]
    answer = bad_answers[name]
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"], answer.json()


def test_the_server_keeps_serving_after_bad_requests(bad_answers, client):
    assert len(bad_answers) == len(BAD)
    assert client.get("/health").status_code == 200
    assert len(client.post("/recommend", json={"history": [1, 2], "k": 4}).json()["items"]) == 4


def _concurrent_answers(url: str, histories: list[list[int]], k: int = 4) -> list[dict]:
    with httpx.Client(base_url=url, timeout=30) as c, ThreadPoolExecutor(8) as pool:

        def ask(history: list[int]) -> dict:
            r = c.post("/recommend", json={"history": history, "k": k})
            r.raise_for_status()
            return r.json()

        return list(pool.map(ask, histories))


class CountingEngine:
    """An engine that counts its calls (forward passes)."""

    def __init__(self, engine) -> None:
        self.engine, self.name, self.calls = engine, engine.name, 0

    def __call__(self, history):
        self.calls += 1
        return self.engine(history)


@pytest.mark.parametrize("limits", [Limits(wait_ms=50), Limits(gather=False)],
                         ids=["gathered", "one by one"])
def test_concurrent_requests_get_their_own_answers(checkpoint, client, limits):
    rng = np.random.default_rng(1)
    histories = [rng.integers(1, N_ITEMS + 1, rng.integers(1, 2 * MAX_LEN)).tolist()
                 for _ in range(32)]
    singles = [client.post("/recommend", json={"history": h, "k": 4}).json() for h in histories]
    rec = load_recommender(checkpoint.parent)
    rec.engine = counting = CountingEngine(rec.engine)
    with live_server(create_app(rec, limits)) as other:
        answers = _concurrent_answers(other, histories)
    if limits.gather:
        assert counting.calls < len(histories)  # some requests shared a forward pass
    else:
        assert counting.calls == len(histories)
    assert [a["items"] for a in answers] == [s["items"] for s in singles]
    for a, s in zip(answers, singles, strict=True):
        np.testing.assert_allclose(a["scores"], s["scores"], rtol=1e-5, atol=1e-6)


def _adarec(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """The command line, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "adarec", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _user_error(proc: subprocess.CompletedProcess, words: str) -> None:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and words in line, line


def _main(*args) -> subprocess.CompletedProcess:
    """`adarec.cli.main` in this process, as the console script calls it (no server starts
    in these calls; `test_adarec_serve_starts_answers_and_stops` runs the real script)."""
    from adarec.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (mock.patch.object(sys, "argv", ["adarec", *map(str, args)]), redirect_stdout(out),
          redirect_stderr(err), pytest.raises(SystemExit) as exit_):
        main()
    return subprocess.CompletedProcess(args, exit_.value.code or 0, out.getvalue(),
                                       err.getvalue())


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    """`adarec export` of the checkpoint."""
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    proc = _main("export", checkpoint.parent, "--format", "onnx", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert f"[batch, {MAX_LEN}]" in proc.stdout and f"[batch, {N_ITEMS + 1}]" in proc.stdout
    return out


def test_export_refuses_other_formats_and_missing_runs(checkpoint, tmp_path):
    _user_error(_main("export", checkpoint, "--format", "tflite", "--output", tmp_path / "m"),
                "--format must be onnx")
    _user_error(_main("export", tmp_path / "nothing", "--output", tmp_path / "m"),
                "no checkpoint")
    assert not (tmp_path / "m").exists()


def test_adarec_serve_starts_answers_and_stops(checkpoint):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "adarec", "serve", checkpoint.parent,
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "no server"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        answer = httpx.post(f"http://127.0.0.1:{port}/recommend",
                            json={"history": [1, 2], "k": 3}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["items"]) == 3
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}" in out


@pytest.mark.parametrize("args, words", [
    (["nothing/best.pt"], "no checkpoint"),
    (["RUN", "--engine", "tensorrt"], "--engine must be one of"),
    (["RUN", "--item-map", "nothing.tsv"], "no item map"),
    (["RUN", "--item-map", "RUN", "--model-ids"], "contradict"),
    (["RUN", "--engine", "onnxruntime", "--onnx", "nothing.onnx"], "no ONNX file"),
    (["RUN", "--engine", "onnxruntime", "--onnx", "RUN"], "not a loadable ONNX model"),
    (["RUN", "--onnx", "RUN"], "--onnx is for --engine onnxruntime"),
    (["RUN", "--threads", "0"], "--threads must be >= 1"),
    (["RUN", "--max-batch", "0"], "--max-batch"),
], ids=["missing run", "unknown engine", "missing item map", "map and model ids",
        "missing onnx", "not onnx", "onnx for torch", "threads", "max batch"])
def test_serve_refuses_bad_options_with_one_error_line(checkpoint, args, words):
    args = [checkpoint if a == "RUN" else a for a in args]
    _user_error(_main("serve", *args, "--port", free_port()), words)


def test_an_onnx_file_of_another_checkpoint_is_refused(exported, tmp_path):
    other = tiny_checkpoint(tmp_path, n_items=N_ITEMS + 1, max_len=MAX_LEN)
    with pytest.raises(AdarecError, match="export it from this checkpoint"):
        load_recommender(other, engine="onnxruntime", onnx=exported)


def test_the_onnxruntime_engine_answers_as_the_torch_engine(checkpoint, client, exported):
    rec = load_recommender(checkpoint.parent, engine="onnxruntime", onnx=exported)
    with live_server(create_app(rec)) as u:
        with httpx.Client(base_url=u, timeout=30) as onnx:
            assert onnx.get("/metadata").json()["engine"] == "onnxruntime"
            for history in HISTORIES:
                body = {"history": history, "k": 6}
                want, got = client.post("/recommend", json=body).json(), onnx.post(
                    "/recommend", json=body).json()
                assert got["items"] == want["items"]
                np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-4)
            batch = onnx.post("/recommend/batch", json={"histories": HISTORIES, "k": 2})
            assert batch.status_code == 200 and len(batch.json()["results"]) == len(HISTORIES)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, Path]:
    """A log with text item ids, imported; a model trained (here: built) on its file."""
    folder = tmp_path_factory.mktemp("imported")
    rows = [(u, f"sku-{(u * 7 + t) % 12}", t) for u in range(8) for t in range(6)]
    log = folder / "log.csv"
    log.write_text("user,item,timestamp\n" + "".join(f"u{u},{i},{t}\n" for u, i, t in rows))
    data = folder / "seqs.txt"
    import_log(log, data, k_core=0)
    n_items = sum(1 for _ in open(folder / "seqs.item_map.tsv")) - 1
    run = tiny_checkpoint(folder / "run", n_items=n_items, max_len=MAX_LEN,
                          overrides=("data.dataset=file", f"data.data_file={data}"))
    return run, folder / "seqs.item_map.tsv"


def test_original_ids_through_the_item_map_beside_the_data_file(imported):
    run, item_map = imported
    originals = [line.split("\t")[1] for line in item_map.read_text().splitlines()[1:]]
    rec = load_recommender(run.parent)
    assert rec.metadata["item_ids"] == "original"
    assert rec.metadata["item_map"] == str(item_map)
    with live_server(create_app(rec)) as u, httpx.Client(base_url=u, timeout=30) as c:
        got = c.post("/recommend", json={"history": ["sku-3", "sku-5"], "k": 3})
        assert got.status_code == 200
        items = got.json()["items"]
        assert len(items) == 3 and set(items) <= set(originals) - {"sku-3", "sku-5"}
        # The same history in model ids, through a server without the map.
        index = {o: i + 1 for i, o in enumerate(originals)}
        plain = create_app(load_recommender(run.parent, model_ids=True))
        with live_server(plain) as u2, httpx.Client(base_url=u2, timeout=30) as c2:
            want = c2.post("/recommend", json={"history": [index["sku-3"], index["sku-5"]],
                                               "k": 3}).json()
        assert [index[i] for i in items] == want["items"]
        unknown = c.post("/recommend", json={"history": ["sku-3", "nope"]})
        assert unknown.status_code == 422 and "unknown item id 'nope'" in unknown.json()["error"]
        model_id = c.post("/recommend", json={"history": [1]})  # 1 is no original id here
        assert model_id.status_code == 422


@pytest.mark.parametrize("times", [3, 500])
def test_a_body_over_the_limit_gets_413_not_a_reset(url, times):
    """The client is still sending when the server refuses: the server reads and drops the
    rest, so the client reads the 413 (a reset connection before: issue 45)."""
    body = b'{"history": [' + b"1, " * (times * LIMITS.max_body_bytes // 3) + b'1], "k": 3}'
    assert len(body) > times * LIMITS.max_body_bytes - 10
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert "over the limit" in r.json()["error"]
    with httpx.Client(base_url=url, timeout=30) as c:  # and the server goes on
        assert c.post("/recommend", json={"history": [1, 2], "k": 3}).status_code == 200


class SlowEngine(CountingEngine):
    """Each forward pass takes ``seconds``: a server at its capacity."""

    def __init__(self, engine, seconds: float) -> None:
        super().__init__(engine)
        self.seconds = seconds

    def __call__(self, history):
        time.sleep(self.seconds)
        return super().__call__(history)


@pytest.mark.parametrize("gather", [True, False], ids=["gathered", "one by one"])
def test_overload_is_shed_with_503_and_retry_after(checkpoint, gather):
    rec = load_recommender(checkpoint.parent)
    rec.engine = slow = SlowEngine(rec.engine, seconds=0.3)
    limits = Limits(max_queue=2, retry_after_s=3, gather=gather, max_batch=2)
    with live_server(create_app(rec, limits)) as base:
        with httpx.Client(base_url=base, timeout=30) as c, ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(
                lambda h: c.post("/recommend", json={"history": [h % N_ITEMS + 1], "k": 3}),
                range(12)))
            codes = [r.status_code for r in answers]
            assert set(codes) == {200, 503}, codes
            assert 2 <= codes.count(200) < 12
            shed = [r for r in answers if r.status_code == 503]
            assert all(r.headers["retry-after"] == "3" for r in shed)
            assert "overloaded" in shed[0].json()["error"]
            assert c.get("/health").status_code == 200  # never shed
            # Once the requests in flight are answered, requests are admitted again.
            assert c.post("/recommend", json={"history": [1], "k": 3}).status_code == 200
    assert slow.calls <= codes.count(200) + 1
