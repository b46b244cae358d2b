"""ELCRec's released checkpoints as `elcrec` models (docs/method.md#elcrecs-released-weights).

yueliu1999/ELCRec publishes trained models (``src/output/ELCRec-<dataset>-1.pt``): the
state dict of its ``SASRecModel`` (torch.save of ``model.state_dict()``). Its layout, per
layer ``i`` of ``item_encoder.layer``:

==========================================  ===========================================
ELCRec                                      adarec ``elcrec`` (`SASRec` + intents)
==========================================  ===========================================
``item_embeddings.weight`` (n + 2, D)       ``embedding.items.weight`` (rows 0..n + 1)
``position_embeddings.weight`` (L, D)       ``embedding.positions.weight``
``LayerNorm.{weight,bias}``                 ``embedding.ln.{weight,bias}``
``attention.{query,key,value}.*``           ``attn.qkv.*``, the three stacked in that order
``attention.dense.*``                       ``attn.proj.*``
``attention.LayerNorm.*``                   ``ln1.*``
``intermediate.dense_1.*`` / ``dense_2.*``  ``ff.up.*`` / ``ff.down.*``
``intermediate.LayerNorm.*``                ``ln2.*``
``cluster_centers`` (K, D)                  ``aux.intents.centres.centres``
==========================================  ===========================================

ELCRec's item table has a spare row after the last item (its mask id, never trained as an
input); the model built here keeps it, so that scoring ranks the same ``n + 2`` columns as
ELCRec's does under the release's ``zero`` history mask. Both codes count positions alike
at full width (``max_len`` columns): position ``j`` of a ``max_len``-wide input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from adarec.errors import AdarecError

_LAYER = re.compile(r"item_encoder\.layer\.(\d+)\.")
_PER_LAYER = {  # ELCRec's name in a layer -> ours in `transformer.blocks.<i>`
    "attention.dense": "attn.proj",
    "attention.LayerNorm": "ln1",
    "intermediate.dense_1": "ff.up",
    "intermediate.dense_2": "ff.down",
    "intermediate.LayerNorm": "ln2",
}
_QKV = ("query", "key", "value")
_TOP = {  # outside the layers
    "item_embeddings.weight": "embedding.items.weight",
    "position_embeddings.weight": "embedding.positions.weight",
    "LayerNorm.weight": "embedding.ln.weight",
    "LayerNorm.bias": "embedding.ln.bias",
    "cluster_centers": "aux.intents.centres.centres",
}


def elcrec_layers(state: Mapping[str, Tensor]) -> int:
    """Number of transformer layers in an ELCRec state dict (0 if it has none)."""
    found = {int(m.group(1)) for key in state if (m := _LAYER.match(key))}
    return max(found) + 1 if found else 0


def elcrec_shape(state: Mapping[str, Tensor]) -> dict[str, int]:
    """The sizes an ELCRec state dict implies: ``rows`` of the item table, ``hidden_size``,
    ``max_len``, ``num_layers`` and ``n_intents``; `AdarecError` if it is not one."""
    missing = [k for k in _TOP if k not in state]
    if missing:
        raise AdarecError(f"not an ELCRec state dict: no {', '.join(missing)}")
    items, positions = state["item_embeddings.weight"], state["position_embeddings.weight"]
    if items.ndim != 2 or positions.ndim != 2:
        raise AdarecError("not an ELCRec state dict: embedding tables are not matrices")
    if not elcrec_layers(state):
        raise AdarecError("not an ELCRec state dict: no item_encoder.layer.<i> keys")
    return {"rows": items.shape[0], "hidden_size": items.shape[1],
            "max_len": positions.shape[0], "num_layers": elcrec_layers(state),
            "n_intents": state["cluster_centers"].shape[0]}


def from_elcrec(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ELCRec's state dict under our names (see the module's table); every key of the input
    is used exactly once, or `AdarecError` names what does not fit."""
    out, used = {}, set()
    for theirs, ours in _TOP.items():
        if theirs in state:
            out[ours], _ = state[theirs], used.add(theirs)
    for i in range(elcrec_layers(state)):
        src, dst = f"item_encoder.layer.{i}.", f"transformer.blocks.{i}."
        for theirs, ours in _PER_LAYER.items():
            for part in ("weight", "bias"):
                key = f"{src}{theirs}.{part}"
                if key in state:
                    out[f"{dst}{ours}.{part}"], _ = state[key], used.add(key)
        for part in ("weight", "bias"):
            keys = [f"{src}attention.{name}.{part}" for name in _QKV]
            if all(k in state for k in keys):
                out[f"{dst}attn.qkv.{part}"] = torch.cat([state[k] for k in keys])
                used.update(keys)
    unused = sorted(set(state) - used)
    if unused:
        raise AdarecError(f"not an ELCRec state dict: unexpected keys {', '.join(unused[:3])}"
                          + (f" and {len(unused) - 3} more" if len(unused) > 3 else ""))
    return out


def load_elcrec_state(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Copy an ELCRec state dict into ``model`` (an `elcrec` `SASRec` of the same sizes).

    The item table is replaced by one of ELCRec's ``n + 2`` rows if the model has ``n + 1``.
    Every tensor must fit exactly: a missing or unexpected key, or a shape that differs
    (a transposed weight of a non-square matrix, another width or layer count) raises
    `AdarecError` naming the first one.
    """
    mapped = from_elcrec(state)
    items = model.embedding.items
    rows = mapped["embedding.items.weight"].shape[0]
    if rows == items.num_embeddings + 1 and mapped["embedding.items.weight"].shape[1] == \
            items.embedding_dim:
        model.embedding.items = nn.Embedding(rows, items.embedding_dim, padding_idx=0,
                                             device=items.weight.device,
                                             dtype=items.weight.dtype)
    ours = model.state_dict()
    missing = sorted(set(ours) - set(mapped))
    if missing:
        raise AdarecError(f"the checkpoint has no value for {missing[0]} (of {len(missing)} "
                          "missing); is it a model of another layer count?")
    extra = sorted(set(mapped) - set(ours))
    if extra:
        raise AdarecError(f"the checkpoint has {extra[0]}, which this model lacks; is it a "
                          "model of another layer count?")
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            raise AdarecError(f"{key}: the checkpoint's shape {tuple(value.shape)} does not "
                              f"fit the model's {tuple(ours[key].shape)}")
        if not value.is_floating_point():
            raise AdarecError(f"{key}: expected floating-point weights, got {value.dtype}")
    model.load_state_dict(mapped)
