"""ELCRec's pooling over all positions and its released checkpoints (issue 39).

The reference below is ELCRec's ``SASRecModel.forward`` (yueliu1999/ELCRec ``src/models.py``,
``src/modules.py``) in evaluation mode, written out from its maths on a state dict in
ELCRec's own key layout: separate query/key/value, an additive -10000 mask, LayerNorm with
eps 1e-12, erf GELU. It reads nothing of adarec's, so it checks both the key mapping
(`adarec.model.elcrec_port`) and the padding outputs of `SequenceModel.encode_full`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from adarec.config import load_config
from adarec.errors import AdarecError
from adarec.model.build import build_model
from adarec.model.elcrec_port import elcrec_shape, from_elcrec, load_elcrec_state
from adarec.model.encoder import attention_mask
from adarec.model.interface import Batch

DIM, N_ITEMS, MAX_LEN, LAYERS, HEADS, K = 16, 30, 12, 2, 2, 4


def elcrec_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in ELCRec's layout: n + 2 item rows, LAYERS layers."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.3

    sd = {"item_embeddings.weight": r(N_ITEMS + 2, DIM),
          "position_embeddings.weight": r(MAX_LEN, DIM),
          "LayerNorm.weight": 1 + r(DIM), "LayerNorm.bias": r(DIM),
          "cluster_centers": r(K, DIM)}
    for i in range(LAYERS):
        p = f"item_encoder.layer.{i}."
        for name, (rows, cols) in {"attention.query": (DIM, DIM), "attention.key": (DIM, DIM),
                                   "attention.value": (DIM, DIM), "attention.dense": (DIM, DIM),
                                   "intermediate.dense_1": (4 * DIM, DIM),
                                   "intermediate.dense_2": (DIM, 4 * DIM)}.items():
            sd[p + name + ".weight"], sd[p + name + ".bias"] = r(rows, cols), r(rows)
        for name in ("attention.LayerNorm", "intermediate.LayerNorm"):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = 1 + r(DIM), r(DIM)
    return sd


def elcrec_forward(sd: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """ELCRec's forward pass (eval mode) from its state dict: (B, L) -> (B, L, D)."""
    b, length = ids.shape
    allowed = (ids > 0).long()[:, None, None, :] * torch.ones(length, length).tril().long()
    additive = (1.0 - allowed.float()) * -10000.0

    def norm(x, name):
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        return sd[name + ".weight"] * (x - u) / torch.sqrt(s + 1e-12) + sd[name + ".bias"]

    def linear(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    x = norm(sd["item_embeddings.weight"][ids] + sd["position_embeddings.weight"][:length],
             "LayerNorm")
    hs = DIM // HEADS
    for i in range(LAYERS):
        p = f"item_encoder.layer.{i}."
        q, k, v = (linear(x, p + "attention." + n).view(b, length, HEADS, hs).transpose(1, 2)
                   for n in ("query", "key", "value"))
        probs = (q @ k.transpose(-1, -2) / math.sqrt(hs) + additive).softmax(-1)
        context = (probs @ v).transpose(1, 2).reshape(b, length, DIM)
        x = norm(linear(context, p + "attention.dense") + x, p + "attention.LayerNorm")
        h = linear(x, p + "intermediate.dense_1")
        h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
        x = norm(linear(h, p + "intermediate.dense_2") + x, p + "intermediate.LayerNorm")
    return x


def ours(pool: str = "all", **overrides: object) -> torch.nn.Module:
    sets = [f"model.hidden_size={DIM}", f"model.num_layers={LAYERS}", f"model.num_heads={HEADS}",
            f"intents.n_intents={K}", f"intents.pool={pool}",
            *(f"{k}={v}" for k, v in overrides.items())]
    return build_model(load_config("elcrec-beauty", overrides=sets), n_items=N_ITEMS,
                       max_len=MAX_LEN)


def left_padded(lengths: list[int], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), MAX_LEN, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, MAX_LEN - n :] = torch.randint(1, N_ITEMS + 1, (n,), generator=g)
    return ids


# Every padding count from 0 to max_len - 1, a zero id inside a row (what the Mask augmentation
# writes) and a zero id as a row's first item.
def _inputs() -> torch.Tensor:
    ids = left_padded(list(range(MAX_LEN, 0, -1)))
    ids[0, 5] = 0
    ids[3, MAX_LEN - 9] = 0
    return ids


def test_attention_mask_all_lets_an_empty_query_see_its_whole_row() -> None:
    ids = torch.tensor([[0, 0, 5, 0, 7]])
    self_mask, all_mask = attention_mask(ids)[0, 0], attention_mask(ids, "all")[0, 0]
    # Real queries: the same either way.
    for q in (2, 4):
        assert torch.equal(self_mask[q], all_mask[q])
    # A zero id after a real item sees the earlier real items (and itself under "self").
    assert all_mask[3].tolist() == [False, False, True, False, False]
    assert self_mask[3].tolist() == [False, False, True, True, False]
    # Padding queries: every key of the row under "all", only themselves under "self".
    assert all_mask[0].all() and all_mask[1].all()
    assert self_mask[0].tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="padding_queries"):
        attention_mask(ids, "none")


def test_mapped_weights_give_elcrecs_outputs_at_every_position() -> None:
    """In float64: in float32 ELCRec's padding rows lose precision to their -10000 offset
    (its spacing there is 1e-3), which our boolean mask does not."""
    sd = {k: v.double() for k, v in elcrec_state().items()}
    model = ours().double()
    load_elcrec_state(model, sd)
    model.eval()
    ids = _inputs()
    with torch.no_grad():
        ref = elcrec_forward(sd, ids)
        full = model.encode_full(ids)
        plain = model(ids)
        scores = model.score(ids)
    torch.testing.assert_close(full, ref)
    real = ids > 0
    torch.testing.assert_close(plain[real], ref[real])
    # The padding outputs are what ELCRec's pooling reads: `forward` does not compute them.
    assert (plain[~real] - ref[~real]).abs().max() > 1e-2
    # Scores over ELCRec's n + 2 columns, the spare row included.
    assert scores.shape == (len(ids), N_ITEMS + 2)
    torch.testing.assert_close(scores, ref[:, -1] @ sd["item_embeddings.weight"].T)
    assert torch.equal(model.aux["intents"].centres.centres, sd["cluster_centers"])


def test_a_wrong_key_mapping_or_a_transposed_weight_is_caught() -> None:
    sd, ids = {k: v.double() for k, v in elcrec_state().items()}, _inputs()
    ref = elcrec_forward(sd, ids)

    def outputs(state):
        model = ours().double()
        load_elcrec_state(model, state)
        with torch.no_grad():
            return model.eval().encode_full(ids)

    torch.testing.assert_close(outputs(sd), ref)
    # Query and key swapped (a wrong mapping): same shapes, other outputs.
    swapped = dict(sd)
    for part in ("weight", "bias"):
        q, k = (f"item_encoder.layer.0.attention.{n}.{part}" for n in ("query", "key"))
        swapped[q], swapped[k] = sd[k], sd[q]
    assert (outputs(swapped) - ref).abs().max() > 1e-3
    # A square weight transposed: the shapes cannot tell, the outputs do.
    square = dict(sd)
    key = "item_encoder.layer.1.attention.value.weight"
    square[key] = sd[key].T.contiguous()
    assert (outputs(square) - ref).abs().max() > 1e-3
    # A non-square weight transposed: refused by shape.
    wide = dict(sd)
    key = "item_encoder.layer.0.intermediate.dense_1.weight"
    wide[key] = sd[key].T.contiguous()
    with pytest.raises(AdarecError, match="ff.up.weight: the checkpoint's shape"):
        load_elcrec_state(ours(), wide)


@pytest.mark.parametrize("change", ["missing", "extra", "layers", "width", "rename"])
def test_a_checkpoint_that_does_not_fit_is_refused(change: str) -> None:
    sd = elcrec_state()
    if change == "missing":
        del sd["item_encoder.layer.1.intermediate.LayerNorm.bias"]
    elif change == "extra":
        sd["projection.weight"] = torch.zeros(2, 2)
    elif change == "layers":  # a 1-layer ELCRec into a 2-layer model
        sd = {k: v for k, v in sd.items() if "layer.1." not in k}
    elif change == "width":
        sd["position_embeddings.weight"] = torch.zeros(MAX_LEN, DIM + 1)
    else:
        sd = {k.replace("item_encoder.", "encoder."): v for k, v in sd.items()}
    with pytest.raises(AdarecError):
        load_elcrec_state(ours(), sd)


def test_elcrec_shape_reads_the_sizes() -> None:
    assert elcrec_shape(elcrec_state()) == {"rows": N_ITEMS + 2, "hidden_size": DIM,
                                            "max_len": MAX_LEN, "num_layers": LAYERS,
                                            "n_intents": K}
    assert set(from_elcrec(elcrec_state())) == set(ours().state_dict())
    with pytest.raises(AdarecError, match="not an ELCRec state dict"):
        elcrec_shape({"weight": torch.zeros(2)})


def _loss_parts(model: torch.nn.Module, batch: Batch, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return model.loss(batch).parts


@pytest.mark.parametrize("lengths", [[3, 1, 2, 4], [MAX_LEN, 2, 7, 1]])
def test_pool_all_does_not_depend_on_trimmed_padding(lengths: list[int]) -> None:
    """ELCRec's pooling encodes at full width whatever width the batch comes in (the CPU
    trims all-padding columns): the same losses, draw for draw."""
    model = ours()
    ids = left_padded(lengths, seed=3)
    targets = torch.roll(ids, -1, dims=1) * (ids > 0)
    width = max(lengths)
    full = _loss_parts(model, Batch(ids, targets), seed=5)
    trimmed = _loss_parts(model, Batch(ids[:, -width:], targets[:, -width:]), seed=5)
    assert full.keys() == trimmed.keys() >= {"rec", "cluster", "instance", "intent"}
    for name in full:
        torch.testing.assert_close(full[name], trimmed[name], atol=1e-5, rtol=1e-5)


def test_pool_all_pools_the_padding_outputs_as_elcrec_does() -> None:
    """The clustering loss of `pool=all` reads ELCRec's mean over all positions of the clean
    output: in eval mode, from the reference forward pass, by hand."""
    from adarec.model.intents import cluster_loss

    sd = {k: v.double() for k, v in elcrec_state().items()}
    model = ours().double()
    load_elcrec_state(model, sd)
    model.eval()  # no dropout: the clean pass is deterministic
    ids = _inputs()
    targets = torch.roll(ids, -1, dims=1) * (ids > 0)
    with torch.no_grad():
        parts = model.loss(Batch(ids, targets)).parts
        expected = cluster_loss(elcrec_forward(sd, ids).mean(1), sd["cluster_centers"])
    torch.testing.assert_close(parts["cluster"], expected)
    # With pool=real the same weights give another value (the real positions only).
    real = ours(pool="real").double()
    load_elcrec_state(real, sd)
    with torch.no_grad():
        other = real.eval().loss(Batch(ids, targets)).parts["cluster"]
    assert abs(float(other - expected)) > 1e-3


def test_adarec_with_intents_pool_all_trains_a_step() -> None:
    """The coarse side's intents with ELCRec's pooling: losses finite, gradient reaches the
    coarse expert and the centres."""
    config = load_config("adarec-beauty-h64", overrides=[
        "model.hidden_size=16", "adarec.max_depth=3", "adarec.intents=true",
        "intents.pool=all", "intents.n_intents=4"])
    model = build_model(config, n_items=N_ITEMS, max_len=MAX_LEN)
    ids = left_padded([5, 2, 9, 3], seed=4)
    model.before_training(ids, seed=0)
    out = model.loss(Batch(ids[:, -9:], (torch.roll(ids, -1, 1) * (ids > 0))[:, -9:]))
    assert {"cluster", "instance", "intent"} <= out.parts.keys()
    assert all(torch.isfinite(v) for v in out.parts.values())
    out.total.backward()
    assert model.aux["intents"].centres.centres.grad.abs().sum() > 0
    assert model.coarse.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_released_weights_script_refuses_bad_files(tmp_path: Path, capsys) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import elcrec_weights
    finally:
        sys.path.pop(0)
    sd = elcrec_state()
    good = tmp_path / "model.pt"
    torch.save(sd, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint\n")
    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_dict)
    no_layers = tmp_path / "renamed.pt"
    torch.save({k.replace("item_encoder.", "enc."): v for k, v in sd.items()}, no_layers)
    for path in (tmp_path / "missing.pt", truncated, text, not_dict, no_layers):
        assert elcrec_weights.main([str(path), "--dataset", "Beauty"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
