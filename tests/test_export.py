"""ONNX export: onnxruntime's scores against PyTorch's for every model (small configurations),
at several batch sizes and history lengths; non-deterministic inference is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from serving import TINY  # noqa: E402

from adarec.config import load_config  # noqa: E402
from adarec.errors import AdarecError  # noqa: E402
from adarec.export import OPSET, ScoringGraph, export_onnx, onnx_bytes  # noqa: E402
from adarec.model.build import build_model  # noqa: E402

N_ITEMS, MAX_LEN = 30, 10


def _model(name: str, *overrides: str):
    config = load_config(overrides=[f"model.name={name}", f"data.max_len={MAX_LEN}", *TINY,
                                    *overrides])
    torch.manual_seed(0)
    return build_model(config, n_items=N_ITEMS, max_len=MAX_LEN).eval()


def _histories(rows: int, seed: int) -> torch.Tensor:
    """(rows, MAX_LEN) left-padded histories of lengths 1..MAX_LEN (full ones included)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, N_ITEMS + 1, (rows, MAX_LEN), generator=g)
    lengths = torch.randint(1, MAX_LEN + 1, (rows,), generator=g)
    lengths[0] = MAX_LEN
    x[torch.arange(MAX_LEN)[None, :] < (MAX_LEN - lengths)[:, None]] = 0
    return x


@pytest.mark.parametrize("name", ["sasrec", "elcrec", "adarec", "release"])
def test_onnxruntime_scores_match_pytorch(name):
    model = _model(name)
    blob = onnx_bytes(model, n_items=N_ITEMS, max_len=MAX_LEN)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    opsets = {o.domain: o.version for o in onnx.load_from_string(blob).opset_import}
    assert opsets[""] == OPSET
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("history", "tensor(int64)", MAX_LEN)
    assert (out.name, out.type, out.shape[1]) == ("scores", "tensor(float)", N_ITEMS + 1)
    for rows, seed in ((1, 0), (7, 1), (64, 2)):
        x = _histories(rows, seed)
        with torch.inference_mode():
            want = model.score(x)[:, : N_ITEMS + 1]  # the model as evaluation runs it
        (got,) = session.run(None, {"history": x.numpy()})
        assert got.shape == (rows, N_ITEMS + 1) and got.dtype == np.float32
        assert np.abs(got - want.numpy()).max() <= 1e-4, (name, rows)


def test_the_scoring_graph_leaves_the_model_as_it_was():
    model = _model("adarec").train()
    graph = ScoringGraph(model, N_ITEMS)
    assert model.training and not graph.model.training
    def groupings(m):
        return [x.grouping for x in m.modules() if hasattr(x, "grouping")]

    assert groupings(model) and None not in groupings(model)
    assert set(groupings(graph.model)) == {None}


def test_seeded_noise_is_refused(tmp_path):
    model = _model("adarec", "adarec.eval_noise=seeded")
    with pytest.raises(AdarecError, match="deterministic"):
        export_onnx(model, tmp_path / "m.onnx", n_items=N_ITEMS, max_len=MAX_LEN)
    assert not (tmp_path / "m.onnx").exists()
