"""The interface every model of this package has (as in RecBole: loss, score, set-up).

A model maps left-padded item ids (B, L), 0 = padding, to:

* ``loss(batch) -> LossOutput``: the training loss with its named parts;
* ``score(input_ids) -> (B, C)``: scores of the next item after each input, C >= n_items + 1;
* ``before_training(train_inputs, seed)``: run once before its first epoch (k-means);
* ``stages() -> list[Stage]``: what trains, one after the other, each with its own optimiser
  and early stopping: the model itself, or (the release's ensemble) each of its members.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn


class Stage(NamedTuple):
    """One part of a model that trains on its own: ``tag`` names it in the logs ('' for a
    model that trains whole, ``/member0``... for the members of an ensemble)."""

    tag: str
    model: nn.Module


class Model(nn.Module):
    """What every model shares, whatever its parts: it trains as one stage by default."""

    def stages(self) -> list[Stage]:
        """The parts that train one after the other (see `Stage`): here the model itself."""
        return [Stage("", self)]
