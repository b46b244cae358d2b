"""CL4SRec-style sequence augmentations (crop, mask, reorder), vectorised over a batch.

Every operator takes a left-padded int64 batch ``seqs`` (B, L) with 0 = padding (a sequence of
length n occupies the last n columns) and returns a new left-padded (B, L) tensor on the same
device; the input is never modified. Randomness comes only from ``generator`` (or the global
RNG when it is None); draws are made on the generator's device and moved to the batch's.

The length n of a row is counted from its first non-zero column to the end, so a row that was
already masked with the padding id is still measured correctly.

Semantics follow ICLRec / ELCRec ``data_augmentation.py`` (``Crop``, ``Mask``, ``Reorder``,
``Random``), with these documented differences:

- The releases augment the whole training prefix before cutting it to its last ``max_len``
  items; here the batch is already cut, so n <= L. This only matters for histories longer
  than L.
- The releases draw a window start with ``random.randint(0, n - k - 1)`` (inclusive), so a
  crop or reorder window can never contain the last item, and when ``int(ratio * n) == 0``
  their crop returns one item drawn from anywhere. Here the start is uniform over all
  ``n - k + 1`` windows, and a crop keeps ``max(1, int(ratio * n))`` items.
- An all-padding row raises in the releases (``randint(0, -1)``); here it stays all padding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Uniform [0, 1) float64 draws of ``shape`` from ``generator``, placed on ``device``."""
    source = generator.device if generator is not None else device
    draws = torch.rand(shape, generator=generator, device=source, dtype=torch.float64)
    return draws.to(device)


def _lengths(seqs: Tensor) -> Tensor:
    """(B,) number of columns from the first non-zero item to the end (0 for empty rows)."""
    nonzero = seqs != 0  # (B, L)
    first = nonzero.to(torch.int8).argmax(dim=1)  # index of the first non-zero column
    return torch.where(nonzero.any(dim=1), seqs.shape[1] - first, torch.zeros_like(first))


def _fraction(n: Tensor, ratio: float) -> Tensor:
    """``int(ratio * n)`` per row, in float64 like Python's ``int(float * int)``, capped at n."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"augmentation ratio must lie in [0, 1], got {ratio}")
    return torch.minimum(torch.floor(n.to(torch.float64) * ratio).long(), n)


def _window_start(n: Tensor, k: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B,) start, relative to the first real column, uniform over the n - k + 1 windows."""
    u = _uniform((n.shape[0],), generator, n.device)
    start = torch.floor(u * (n - k + 1).to(torch.float64)).long()
    return torch.minimum(start, n - k)  # guards against float rounding at u -> 1


def crop(seqs: Tensor, ratio: float = 0.2, generator: torch.Generator | None = None) -> Tensor:
    """Keep a random contiguous run of ``max(1, int(ratio * n))`` items of each row.

    The run is re-left-padded (it occupies the last columns). Empty rows stay empty.
    Draws: B uniforms (the start).
    """
    length = seqs.shape[1]
    n = _lengths(seqs)
    k = torch.minimum(_fraction(n, ratio).clamp(min=1), n)  # (B,) kept length, 0 iff n == 0
    start = _window_start(n, k, generator)
    cols = torch.arange(length, device=seqs.device)
    # Output column j >= L - k holds real item start + j - (L - k), i.e. absolute column
    # (L - n) + start + j - (L - k) = j + start + k - n.
    src = (cols[None, :] + (start + k - n)[:, None]).clamp(0, length - 1)  # (B, L)
    kept = cols[None, :] >= (length - k)[:, None]
    return torch.where(kept, torch.gather(seqs, 1, src), torch.zeros_like(seqs))


def mask(
    seqs: Tensor,
    ratio: float = 0.7,
    generator: torch.Generator | None = None,
    *,
    mask_id: int = 0,
) -> Tensor:
    """Replace ``int(ratio * n)`` distinct real positions of each row, chosen uniformly, by
    ``mask_id``; the length is kept.

    ``mask_id = 0`` (the padding id) is what ICLRec and ELCRec do: their ``Mask`` writes 0,
    although their ``main.py`` defines ``args.mask_id = max_item + 1`` and never passes it, so
    masked items become invisible to attention. CL4SRec's paper uses a dedicated [mask] token;
    pass ``mask_id = n_items + 1`` (with an embedding row for it) to get that.
    Draws: B * L uniforms.
    """
    batch, length = seqs.shape
    n = _lengths(seqs)
    m = _fraction(n, ratio)  # (B,) how many to mask
    cols = torch.arange(length, device=seqs.device)
    real = cols[None, :] >= (length - n)[:, None]  # (B, L)
    keys = _uniform((batch, length), generator, seqs.device)
    keys = keys.masked_fill(~real, 2.0)  # padding sorts after every real position
    rank = keys.argsort(dim=1).argsort(dim=1)  # real positions get ranks 0 .. n - 1
    return seqs.masked_fill(rank < m[:, None], mask_id)


def reorder(seqs: Tensor, ratio: float = 0.2, generator: torch.Generator | None = None) -> Tensor:
    """Shuffle a random contiguous window of ``int(ratio * n)`` items inside each row.

    Windows of length 0 or 1 leave the row unchanged (as in CL4SRec / ICLRec); items outside
    the window never move. Draws: B uniforms (the start), then B * L (the shuffle).
    """
    batch, length = seqs.shape
    n = _lengths(seqs)
    w = _fraction(n, ratio)  # (B,) window length
    start = (length - n) + _window_start(n, w, generator)  # absolute first column of the window
    cols = torch.arange(length, device=seqs.device)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < (start + w)[:, None])
    # Sort keys: a column outside the window keeps its own index; inside, random keys in
    # [start - 0.5, start + w - 0.5) land between the neighbours, so sorting permutes only
    # the window, uniformly at random.
    noise = _uniform((batch, length), generator, seqs.device)
    shuffled = (start - 0.5)[:, None] + noise * w[:, None].to(torch.float64)
    keys = torch.where(inside, shuffled, cols[None, :].to(torch.float64).expand(batch, -1))
    return torch.gather(seqs, 1, keys.argsort(dim=1))


def random_augment(
    seqs: Tensor,
    generator: torch.Generator | None = None,
    crop_ratio: float = 0.2,
    mask_ratio: float = 0.7,
    reorder_ratio: float = 0.2,
    *,
    mask_id: int = 0,
) -> Tensor:
    """Apply one of crop / mask / reorder per row, chosen uniformly at random (ICLRec's
    ``Random``, one independent choice per row and per call).

    All three operators run on the whole batch and each row is then selected, so the draws
    are, in order: crop's, mask's, reorder's, then B choices ``randint(0, 3)``
    (0 = crop, 1 = mask, 2 = reorder).
    """
    cropped = crop(seqs, crop_ratio, generator)
    masked = mask(seqs, mask_ratio, generator, mask_id=mask_id)
    reordered = reorder(seqs, reorder_ratio, generator)
    source = generator.device if generator is not None else seqs.device
    choice = torch.randint(0, 3, (seqs.shape[0],), generator=generator, device=source)
    choice = choice.to(seqs.device)[:, None]  # (B, 1)
    return torch.where(choice == 0, cropped, torch.where(choice == 1, masked, reordered))
