"""ELCRec intent centres and losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from adarec.errors import AdarecError
from adarec.model.intents import (
    IntentCentres,
    IntentLosses,
    cluster_loss,
    info_nce,
    intent_losses,
    mean_pool,
)


def _centres(values: list[list[float]]) -> IntentCentres:
    module = IntentCentres(len(values), len(values[0]))
    with torch.no_grad():
        module.centres.copy_(torch.tensor(values))
    return module


def test_mean_pool_with_and_without_mask() -> None:
    x = torch.tensor([[[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]]])  # (1, 3, 2), first position padding
    assert torch.allclose(mean_pool(x), torch.tensor([[2.0, 4.0]]))  # padding counted (ELCRec)
    mask = torch.tensor([[False, True, True]])
    assert torch.allclose(mean_pool(x, mask), torch.tensor([[3.0, 6.0]]))
    assert torch.equal(mean_pool(x, torch.zeros(1, 3)), torch.zeros(1, 2))


def test_info_nce_hand_computed() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # sim_ab = [[1, 1], [0, 1]], sim_aa = [[-, 0], [0, -]], sim_bb = [[-, 1], [1, -]].
    # Logit rows [a.b | a.a] then [b.b | b.a]; row r's positive is column r (a_i.b_i):
    # row a0: [1, 1, -inf, 0]  positive 1 -> log(2e + 1) - 1
    # row a1: [0, 1, 0, -inf]  positive 1 -> log(e + 2) - 1
    # row b0: [-inf, 1, 1, 0]  positive 1 -> log(2e + 1) - 1
    # row b1: [1, -inf, 1, 1]  positive 1 -> log(3e) - 1 = log 3
    e = math.e
    expected = (2 * (math.log(2 * e + 1) - 1) + math.log(e + 2) - 1 + math.log(3)) / 4
    assert info_nce(a, b, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # Temperature divides the dot products: t = 4 is the same as halving both inputs.
    assert info_nce(a, b, 4.0).item() == pytest.approx(info_nce(a / 2, b / 2, 1.0).item())


def test_info_nce_groups_mask_same_group_negatives_as_the_release_does() -> None:
    """The release's intent loss (``PCLoss`` with ``intent_ids``): rows that share a group
    are not negatives of each other, in either view or across them."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    groups = torch.tensor([5, 5, 7])  # rows 0 and 1 share an intent
    # sims (a = b): ab = aa = bb = diag(1, 1, 0). Masked: aa, bb where same group (diagonal
    # included), ab where same group off the diagonal.
    # row a0: [1, -inf, 0 | -inf, -inf, 0]  positive 1 -> log(e + 2) - 1 (a1 row alike)
    # row a2: [0, 0, 0 | 0, 0, -inf]         positive 0 -> log 5            (b2 row alike)
    # row b0: [-inf, -inf, 0 | 1, -inf, 0]  positive 1 -> log(e + 2) - 1 (b1 row alike)
    e = math.e
    expected = (4 * (math.log(e + 2) - 1) + 2 * math.log(5)) / 6
    assert info_nce(a, a, 1.0, groups=groups).item() == pytest.approx(expected, rel=1e-6)
    # Without groups row a0 keeps a1 as a negative: [1, 0, 0 | -inf, 0, 0].
    plain = (4 * (math.log(e + 4) - 1) + 2 * math.log(5)) / 6
    assert info_nce(a, a, 1.0).item() == pytest.approx(plain, rel=1e-6)
    # Distinct groups change nothing; one shared group leaves only the positives (loss 0).
    assert info_nce(a, a, groups=torch.arange(3)).item() == pytest.approx(plain, rel=1e-6)
    assert info_nce(a, a, groups=torch.zeros(3, dtype=torch.long)).item() == pytest.approx(0.0)


def test_cluster_loss_hand_computed_2x2() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised: e1, e2
    c = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # normalised: e1, (1, 1) / sqrt 2
    r = 2 - math.sqrt(2)  # ||e1 - (1,1)/sqrt2||^2 = ||e2 - (1,1)/sqrt2||^2
    sample = (0 + r + 2 + r) / 4  # ||e1-e1||, ||e1-c1||, ||e2-e1||, ||e2-c1||
    centre = (0 + r + r + 0) / 4
    assert sample - centre == pytest.approx(0.5)
    assert cluster_loss(x, c).item() == pytest.approx(0.5, abs=1e-6)


def test_cluster_loss_hand_computed_3x2() -> None:
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-2.0, 0.0]])  # normalised: e1, e2, -e1
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # distances to (e1, e2): [0, 2], [2, 0], [4, 2] -> mean 10/6; centres: [[0, 2], [2, 0]] -> 1
    assert cluster_loss(x, c).item() == pytest.approx(10 / 6 - 1, abs=1e-6)


def test_cluster_loss_is_bounded_by_the_users_mean_direction() -> None:
    """With unit x and c, the loss is ``2 c_mean . (c_mean - x_mean)``, so it is at least
    ``-||x_mean||^2 / 2`` (equality at ``c_mean = x_mean / 2``): it can only reach -1/2 when
    every user's representation is the same direction (docs/method.md, the intents on the
    coarse side). A run's value L therefore bounds the users' mean direction from below,
    ``||x_mean|| >= sqrt(-2 L)``."""
    gen = torch.Generator().manual_seed(0)
    x, c = torch.randn(64, 8, generator=gen), torch.randn(16, 8, generator=gen)
    xm = torch.nn.functional.normalize(x, dim=-1).mean(0)
    cm = torch.nn.functional.normalize(c, dim=-1).mean(0)
    loss = cluster_loss(x, c).item()
    assert loss == pytest.approx((2 * cm @ (cm - xm)).item(), abs=1e-5)
    assert loss >= -(xm @ xm).item() / 2 - 1e-6
    # Collapsed users and centres whose mean is half their direction: the minimum, -1/2.
    same = torch.tensor([[3.0, 4.0]]).expand(5, 2)
    # Centres: four that cancel and four copies of u = (0.6, 0.8), so their mean is u / 2.
    centres = torch.tensor([[0.6, 0.8], [-0.6, -0.8], [0.8, -0.6], [-0.8, 0.6]])
    centres = torch.cat([centres, torch.tensor([[0.6, 0.8]]).expand(4, 2)])
    assert cluster_loss(same, centres).item() == pytest.approx(-0.5, abs=1e-6)
    assert cluster_loss(torch.tensor([[3.0, 4.0], [4.0, -3.0]]), centres).item() > -0.5


def test_cluster_loss_gives_gradient_to_centres() -> None:
    centres = _centres([[1.0, 0.2], [0.1, 1.0]])
    cluster_loss(torch.tensor([[1.0, 1.0], [2.0, -1.0]]), centres.centres).backward()
    assert centres.centres.grad is not None and centres.centres.grad.abs().sum() > 0


def test_nearest_uses_direction_only() -> None:
    centres = _centres([[2.0, 0.0], [0.0, 0.5]])  # unit: e1, e2
    x = torch.tensor([[3.0, 1.0], [0.1, 5.0], [-1.0, 0.2]])
    index, chosen = centres.nearest(x)
    assert index.tolist() == [0, 1, 1]
    assert torch.allclose(chosen, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    assert torch.equal(centres.nearest(10 * x)[0], index)
    per_pos, _ = centres.nearest(x.reshape(1, 3, 2))  # leading dims kept
    assert per_pos.tolist() == [[0, 1, 1]]


def test_fuse_add_concat_and_sequence_assignment() -> None:
    centres = _centres([[1.0, 0.0], [0.0, 1.0]])
    out = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])  # (1, 2, 2)
    added = centres.fuse(out, "add")
    assert torch.allclose(added, torch.tensor([[[3.0, 0.0], [0.0, 4.0]]]))
    joined = centres.fuse(out, "concat")
    assert joined.shape == (1, 2, 4)
    assert torch.allclose(joined[0, 1], torch.tensor([0.0, 3.0, 0.0, 1.0]))
    whole = centres.fuse(out, "add", assign="sequence")  # mean (1, 1.5) -> e2 for both
    assert torch.allclose(whole, torch.tensor([[[2.0, 1.0], [0.0, 4.0]]]))
    with pytest.raises(ValueError):
        centres.fuse(out, "sum")  # type: ignore[arg-type]


@pytest.mark.parametrize("fusion", ["add", "concat"])
def test_intent_losses_values_and_gradients(fusion: str) -> None:
    torch.manual_seed(0)
    centres = IntentCentres(3, 4)
    clean = torch.randn(5, 4, requires_grad=True)
    views = (torch.randn(5, 6, 4, requires_grad=True), torch.randn(5, 6, 4, requires_grad=True))
    losses = intent_losses(clean, views, centres, fusion=fusion, temperature=1.0)
    assert isinstance(losses, IntentLosses)
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses)
    # Components recomputed from the pieces.
    flat = [centres.fuse(v, fusion).reshape(5, -1) for v in views]
    assert losses.instance.item() == pytest.approx(info_nce(flat[0], flat[1], 1.0).item())
    _, target = centres.nearest(clean)
    intent = (info_nce(views[0].mean(1), target) + info_nce(views[1].mean(1), target)) / 2
    assert losses.intent.item() == pytest.approx(intent.item())
    assert losses.cluster.item() == pytest.approx(cluster_loss(clean, centres.centres).item())
    for part in losses:  # every loss reaches the centres
        centres.zero_grad()
        part.backward(retain_graph=True)
        assert centres.centres.grad is not None and centres.centres.grad.abs().sum() > 0
    assert views[0].grad is not None and clean.grad is not None


def test_intent_losses_with_masks_pools_real_positions() -> None:
    torch.manual_seed(1)
    centres = IntentCentres(2, 3)
    views = (torch.randn(4, 5, 3), torch.randn(4, 5, 3))
    masks = (torch.rand(4, 5) > 0.3, torch.rand(4, 5) > 0.3)
    clean = torch.randn(4, 3)
    losses = intent_losses(clean, views, centres, fusion="add", view_masks=masks)
    _, target = centres.nearest(clean)
    expected = sum(info_nce(mean_pool(v, m), target) for v, m in zip(views, masks, strict=True))
    assert losses.intent.item() == pytest.approx(expected.item() / 2)


def test_initialise_recovers_separated_cluster_means() -> None:
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    reps = torch.cat([m + 0.1 * torch.randn(30, 2, generator=gen) for m in means])
    centres = IntentCentres(3, 2)
    centres.initialise(reps, seed=0)
    blob_means = torch.stack([reps[i * 30 : (i + 1) * 30].mean(0) for i in range(3)])
    expected = torch.nn.functional.normalize(blob_means, dim=-1)
    got = centres.centres.detach()
    order = (got @ expected.T).argmax(dim=1)  # centroid order is arbitrary
    assert sorted(order.tolist()) == [0, 1, 2]
    assert torch.allclose(got, expected[order], atol=1e-5)
    again = IntentCentres(3, 2)
    again.initialise(reps, seed=0)
    assert torch.equal(again.centres, centres.centres)


def test_initialise_refuses_too_few_samples() -> None:
    with pytest.raises(AdarecError, match="at least 4"):
        IntentCentres(4, 2).initialise(torch.randn(3, 2), seed=0)
    with pytest.raises(ValueError, match="shape"):
        IntentCentres(2, 2).initialise(torch.randn(5, 3), seed=0)


@pytest.mark.parametrize("max_groups", [1, 3, 8])
def test_flat_gram_is_the_dense_gram_of_masked_sequences(max_groups):
    """Values and gradients (through the mask) of the grouped Gram matrix against the dense
    one; rows of every length, a hole inside a row, an all-padding row."""
    from adarec.model.grouping import flat_gram

    torch.manual_seed(0)
    lengths = torch.tensor([0, 1, 2, 3, 5, 8, 8, 12, 12, 7, 1, 4])
    real = torch.arange(12)[None, :] >= 12 - lengths[:, None]  # right-aligned
    real[7, 4] = False  # a hole
    base = torch.randn(12, 12, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(12, 12, dtype=torch.float64)
    grads = []
    for gram in (lambda z: z.flatten(1) @ z.flatten(1).T,
                 lambda z: flat_gram(z, max_groups=max_groups, cost=0)):
        z = base * real.unsqueeze(-1)
        out = gram(z)
        (g,) = torch.autograd.grad((out * weights).sum(), base)
        grads.append((out.detach(), g))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1])


def test_info_nce_with_flat_gram_matches_the_flattened_vectors():
    from adarec.model.grouping import flat_gram
    from adarec.model.intents import info_nce

    torch.manual_seed(1)
    real = torch.arange(6)[None, :] >= 6 - torch.tensor([1, 3, 6, 2, 6, 4, 5, 1])[:, None]
    z = torch.randn(8, 6, 4) * real.unsqueeze(-1)
    a, b = z[:4], z[4:]
    expected = info_nce(a.flatten(1), b.flatten(1), 0.5)
    grouped = info_nce(a, b, 0.5, gram=lambda z: flat_gram(z, cost=0))
    torch.testing.assert_close(grouped, expected)
