"""ADARec's adaptive depth controller and hierarchical diffusion (docs/method.md#adarec).

Shapes: B users, L positions, D width, T = T_max levels; level 0 is the clean embedding E0,
level k >= 1 is the one-step clean estimate of E0 after k noising steps. Every level of a batch
is computed at once; levels deeper than a user's depth are masked, never looped over.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def linear_alpha_bars(n_steps: int, beta_start: float, beta_end: float) -> Tensor:
    """(n_steps,) ``abar_k = prod_{j<=k} (1 - beta_j)`` of a linear DDPM schedule, k = 1..n."""
    betas = torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0).float()


def span_alpha_bars(max_depth: int, abar_at_max: float) -> Tensor:
    """(max_depth,) ``abar_k = 1 - (k / T)^2 (1 - abar_at_max)``, k = 1..T: the noise std
    ``sqrt(1 - abar_k) = (k / T) sqrt(1 - abar_at_max)`` grows evenly from level to level
    and reaches ``sqrt(1 - abar_at_max)`` at T = max_depth
    (docs/method.md#what-the-mechanism-does-in-training)."""
    k = torch.arange(1, max_depth + 1, dtype=torch.float64)
    return (1.0 - (k / max_depth) ** 2 * (1.0 - abar_at_max)).float()


def level_mask(onehot: Tensor) -> Tensor:
    """(..., T+1) one-hot depth -> (..., T+1) mask ``m_k = sum_{j>=k} onehot_j`` (m_0 = 1).

    Differentiable: with a straight-through one-hot the gradient reaches the controller.
    """
    return onehot.flip(-1).cumsum(-1).flip(-1)


class Depth(NamedTuple):
    """A controller's decision: ``onehot`` (B, L, T+1) over depths 0..T at every position
    (straight-through in training), ``expl`` the exploration loss (negative entropy of the
    soft choice, averaged over real positions) and ``count`` the number of real positions
    (so that means over separate groups of rows can be merged)."""

    onehot: Tensor
    expl: Tensor
    count: Tensor


def roll_rows(x: Tensor, shift: Tensor) -> Tensor:
    """Row b of (B, L, ...) rotated left by ``shift[b]``: out[b, j] = x[b, (j + shift[b]) % L].

    ``roll_rows(x, L - n)`` moves each row's last n (real) positions to the front;
    ``roll_rows(y, n)`` moves them back.
    """
    length = x.shape[1]
    idx = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length
    return torch.gather(x, 1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def run_gru(gru: nn.GRU, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """``gru``'s outputs over ``x`` (B, L, D) in fp32 even under autocast (a small share of
    the work, and cuDNN's reduced-precision RNN kernels vary by card).

    ``lengths`` (B,) says that row b's real steps are its first ``lengths[b]``. On the CPU the
    GRU then runs packed, over real steps only (outputs after a row's length are zeros,
    instead of the GRU running on over padding); on a GPU packing would cost a sync, so the
    whole width runs, as it does while compiling (a packed sequence breaks the graph).
    Outputs at real steps are the same either way.
    """
    with torch.autocast(x.device.type, enabled=False):
        if (lengths is None or x.device.type != "cpu" or torch.compiler.is_compiling()
                or len(x) == 0):  # nothing to pack
            out, _ = gru(x.float())
            return out
        packed = nn.utils.rnn.pack_padded_sequence(
            x.float(), lengths.clamp(min=1), batch_first=True, enforce_sorted=False
        )
        out, _ = gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=x.shape[1])
    return out


class DepthController(nn.Module):
    """The Adaptive Depth Controller: ``h_c = GRU([E0 ; v_len])``, logits over depths 0..T.

    Causal by construction: the decision at position t reads only items up to t (the GRU
    state after item t, and ``v_len`` = the number of items so far / ``max_len``). At the last
    position, the one that is scored, this is exactly the paper's whole-sequence decision; at
    earlier (training) positions it keeps later items, the targets among them, out of the
    prediction. The GRU reads real items only (rows are right-aligned, padding trails), so
    padding never changes a decision. Training draws a straight-through Gumbel-softmax sample
    (hard one-hot forward, soft gradient); evaluation takes the argmax. The head and the draw
    run in fp32 even under autocast, so the forward one-hot is exactly 0/1.

    ``draw``: ``position`` draws fresh Gumbel noise at every position; ``sequence`` draws one
    noise vector per row, shared by its positions (still causal: the logits at t read items
    up to t only), so a user's decisions along the sequence move together, as one decision
    per sequence would (docs/method.md#what-the-mechanism-does-in-training).
    """

    def __init__(self, *, dim: int, max_depth: int, max_len: int, tau: float = 0.5,
                 draw: str = "position") -> None:
        super().__init__()
        self.length_embedding = nn.Linear(1, dim)
        self.gru = nn.GRU(2 * dim, dim, batch_first=True)
        self.head = nn.Linear(dim, max_depth + 1)
        self.max_len = max_len
        self.tau = tau
        self.draw = draw

    def _sample(self, logits: Tensor) -> Tensor:
        """(B, L, T+1) fp32 logits -> straight-through one-hot (hard forward, soft gradient)."""
        shape = (logits.shape[0], 1, logits.shape[2]) if self.draw == "sequence" else logits.shape
        u = torch.rand(shape, device=logits.device, dtype=logits.dtype)
        gumbel = -(-u.clamp(min=1e-20).log()).clamp(min=1e-20).log()  # -log(-log u)
        soft = ((logits + gumbel) / self.tau).softmax(-1)
        hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        return hard - soft.detach() + soft

    def forward(self, e0: Tensor, input_ids: Tensor) -> Depth:
        real = input_ids > 0  # (B, L)
        lengths = real.sum(1)  # (B,)
        so_far = real.cumsum(1).float() / self.max_len  # (B, L)
        x = torch.cat([e0, self.length_embedding(so_far.unsqueeze(-1))], dim=-1)  # (B, L, 2D)
        length = input_ids.shape[1]
        out = run_gru(self.gru, roll_rows(x, length - lengths), lengths)  # real first, fp32
        with torch.autocast(out.device.type, enabled=False):
            logits = self.head(roll_rows(out, lengths).float())  # (B, L, T+1), back in place
            log_p = logits.log_softmax(-1)
            neg_entropy = (log_p.exp() * log_p).sum(-1)  # (B, L)
            count = real.sum()
            expl = (neg_entropy * real).sum() / count.clamp(min=1)  # minimising it explores
            if self.training:
                onehot = self._sample(logits)
            else:
                onehot = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return Depth(onehot, expl, count)


class FixedDepth(nn.Module):
    """The "without ADC" ablation: every user gets the same depth; no exploration loss."""

    def __init__(self, *, depth: int, max_depth: int) -> None:
        super().__init__()
        self.depth, self.max_depth = depth, max_depth

    def forward(self, e0: Tensor, input_ids: Tensor) -> Depth:
        onehot = e0.new_zeros(*input_ids.shape, self.max_depth + 1)
        onehot[..., self.depth] = 1.0
        return Depth(onehot, e0.new_zeros(()), e0.new_zeros(()))


class Denoiser(nn.Module):
    """``eps_theta(E_k, k)``: a small MLP on the noisy embedding and a level embedding."""

    def __init__(self, *, dim: int, max_depth: int) -> None:
        super().__init__()
        self.level_embedding = nn.Embedding(max_depth + 1, dim)
        self.net = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, noisy: Tensor) -> Tensor:
        """(T, B, L, D) noisy levels 1..T -> (T, B, L, D) predicted noise."""
        levels = torch.arange(1, noisy.shape[0] + 1, device=noisy.device)
        cond = self.level_embedding(levels)[:, None, None, :].expand_as(noisy)
        return self.net(torch.cat([noisy, cond], dim=-1))


class Levels(NamedTuple):
    """``levels`` (T+1, B, L, D): E0 then the clean estimates of levels 1..T; ``deno`` the
    denoising loss averaged over the used levels' real positions, ``count`` how many;
    ``deno_zero`` what predicting zero noise would score on the same positions (the baseline
    ``deno`` must beat); ``dist`` (T,) the mean over real positions of
    ``||Ehat_k - E0|| / ||E0||`` for every level, used or not, and ``n_real`` how many
    positions that mean is over. ``deno_zero`` and ``dist`` are detached (logs only)."""

    levels: Tensor
    deno: Tensor
    count: Tensor
    deno_zero: Tensor
    dist: Tensor
    n_real: Tensor


class HierarchicalDiffusion(nn.Module):
    """``E_k = sqrt(abar_k) E0 + sqrt(1 - abar_k) eps_k`` with fresh noise per level, one shared
    denoiser, one-step estimates ``Ehat_k = (E_k - sqrt(1 - abar_k) eps_theta) / sqrt(abar_k)``.

    ``alpha_bars`` (T,) gives level k's ``abar_k`` (built from the configured schedule, see
    `linear_alpha_bars` and `span_alpha_bars`). With no denoiser (the "without HDA"
    ablation) every level is a copy of E0 and there is no denoising loss. In evaluation the
    noise is zero (``eval_noise="zero"``, deterministic) or drawn from a generator seeded
    with ``eval_seed`` at every call (``"seeded"``).

    ``rec_grad`` says whether the other losses' gradients (L_rec's, L_cont's) may reach
    ``eps_theta`` through ``Ehat_k``. Without it (``denoiser_grad=deno_only``) the denoiser
    is trained by ``L_deno`` alone and ``L_deno`` trains the denoiser alone: it reads a
    detached ``E_k``, and ``Ehat_k`` uses a detached prediction, so E0 still gets the other
    losses' gradients through ``E_k`` but none from ``L_deno``.
    """

    def __init__(
        self, *, denoiser: Denoiser | None, alpha_bars: Tensor, eval_noise: str = "zero",
        eval_seed: int = 0, rec_grad: bool = False,
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.max_depth = len(alpha_bars)
        self.register_buffer("alpha_bars", alpha_bars.float().clone(), persistent=False)
        self.eval_noise, self.eval_seed = eval_noise, eval_seed
        self.rec_grad = rec_grad

    @property
    def noise_std(self) -> Tensor:
        """(T,) the std ``sqrt(1 - abar_k)`` of the noise added at levels 1..T (0 without a
        denoiser: the levels are then copies of E0)."""
        if self.denoiser is None:
            return torch.zeros_like(self.alpha_bars)
        return (1 - self.alpha_bars).sqrt()

    def _noise(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if self.training:
            return torch.randn(shape, device=like.device, dtype=like.dtype)
        if self.eval_noise == "zero":
            return like.new_zeros(shape)
        gen = torch.Generator(device=like.device).manual_seed(self.eval_seed)
        return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)

    def forward(self, e0: Tensor, mask: Tensor, real: Tensor) -> Levels:
        """``e0`` (B, L, D), ``mask`` (B, L, T+1) used levels, ``real`` (B, L) real items."""
        t = self.max_depth
        zero = e0.new_zeros(())
        n_real = real.sum().to(e0.dtype)
        if self.denoiser is None or t == 0:
            levels = e0.unsqueeze(0).expand(t + 1, *e0.shape)
            return Levels(levels, zero, zero, zero, e0.new_zeros(t), n_real)
        ab = self.alpha_bars.to(e0.dtype)[:, None, None, None]  # (T, 1, 1, 1)
        eps = self._noise((t, *e0.shape), e0)  # (T, B, L, D)
        noisy = ab.sqrt() * e0 + (1 - ab).sqrt() * eps
        eps_hat = self.denoiser(noisy if self.rec_grad else noisy.detach())
        used_hat = eps_hat if self.rec_grad else eps_hat.detach()
        estimates = (noisy - (1 - ab).sqrt() * used_hat) / ab.sqrt()
        # Mean squared error over D, averaged over used levels' real positions.
        weight = mask[..., 1:].detach().permute(2, 0, 1) * real.to(e0.dtype)  # (T, B, L)
        err = (eps_hat - eps).pow(2).mean(-1)
        count = weight.sum()
        deno = (err * weight).sum() / count.clamp(min=1.0)
        with torch.no_grad():
            deno_zero = (eps.pow(2).mean(-1) * weight).sum() / count.clamp(min=1.0)
            rel = (estimates - e0).float().norm(dim=-1) / e0.float().norm(dim=-1).clamp(min=1e-12)
            dist = (rel * real).sum((1, 2)) / n_real.clamp(min=1.0)  # (T,)
        return Levels(torch.cat([e0.unsqueeze(0), estimates]), deno, count, deno_zero, dist,
                      n_real)
