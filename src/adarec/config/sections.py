"""The typed sections of a run's configuration (pydantic v2 models, frozen, no unknown keys).

Each key is documented by the string below it (pydantic reads these as field descriptions);
docs/configuration.md lists the same keys with types and defaults. Types are checked the way
YAML writes values: an int field takes only ints (never ``true`` or ``1.5``), a float field
takes ints and numeric strings (YAML reads ``1e-3`` as a string) but not ``true``, and no float
may be nan or infinite. Checks between keys of one section are the ``_check`` validators.

The rule for `RuntimeConfig` (docs/configuration.md#what-goes-in-runtime): a key belongs
there when it changes where or how fast a run goes, and at most the floating-point rounding
of what it computes; a key that changes the model, the data, the batches or the protocol
does not.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _exact_int(value: Any) -> Any:
    if type(value) is not int:
        raise ValueError("must be an integer")
    return value


def _depth_lists(value: Any) -> Any:
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(m, (list, tuple)) and len(m) > 0 and all(type(d) is int for d in m)
        for m in value
    )
    if not ok:
        raise ValueError("must be a list of each member's candidate depths (non-empty lists "
                         "of integers), e.g. [[4, 5], [9, 10]]")
    return value


Int = StrictInt
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Float = Annotated[float, BeforeValidator(_not_bool)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
Ratio = Annotated[Float, Field(ge=0, le=1)]
Dropout = Annotated[Float, Field(ge=0, lt=1)]
Bool = StrictBool
DepthLists = Annotated[tuple[tuple[int, ...], ...], BeforeValidator(_depth_lists)]


class Section(BaseModel):
    """Common settings: frozen, unknown keys refused, finite floats, attribute docstrings."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True,
        use_attribute_docstrings=True, validate_default=True,
    )


class DataConfig(Section):
    """Which interactions to use and how to cut them (docs/protocol.md#splits)."""

    dataset: str = "synthetic"
    """A registered benchmark (Beauty, Sports_and_Outdoors, Toys_and_Games, Yelp; checked
    when the data loads), ``synthetic`` (generated on the fly) or ``file`` (``data_file``)."""
    data_file: str | None = None
    """Path of a sequence file (``user item item ...``) when ``dataset`` is ``file``."""
    data_dir: str | None = None
    """Directory holding the benchmark files (else $ADAREC_DATA_DIR, else download)."""
    max_len: PositiveInt = 50
    """Inputs keep their last ``max_len`` items."""
    shorten_seq_to: PositiveInt | None = None
    """Sparse protocol k: keep the last k history items (max_len becomes k + 3)."""
    synthetic_users: PositiveInt = 2000
    """Users of the synthetic dataset."""
    synthetic_items: PositiveInt = 500
    """Items of the synthetic dataset."""
    synthetic_seed: NonNegativeInt = 0
    """Seed of the synthetic dataset."""

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.dataset == "file" and not self.data_file:
            raise ValueError("data.dataset is 'file' but no data.data_file was given")
        return self


class ModelConfig(Section):
    """The model and its sizes."""

    name: Literal["sasrec", "elcrec", "adarec", "release"] = "sasrec"
    """``sasrec``; ``elcrec`` (SASRec + the [intents] part); ``adarec`` (the paper's model,
    configured by [adarec]; its coarse expert carries the [intents] part); ``release`` (the
    original release's two-model ensemble, configured by [release])."""
    hidden_size: PositiveInt = 64
    """Embedding and transformer width D."""
    num_layers: PositiveInt = 2
    """Transformer blocks."""
    num_heads: PositiveInt = 2
    """Attention heads (must divide hidden_size)."""
    attn_dropout: Dropout = 0.5
    """Dropout on attention probabilities, in [0, 1)."""
    hidden_dropout: Dropout = 0.5
    """Dropout on embeddings and sub-layer outputs, in [0, 1)."""
    rec_loss: Literal["ce", "bce", "sampled_softmax", "gbce"] = "ce"
    """``ce`` (full-softmax cross-entropy), ``bce`` (one sampled negative per position, as
    the original release trains), or for large catalogues ``sampled_softmax`` (``negatives``
    uniform negatives shared by the batch, logQ-corrected) and ``gbce`` (gSASRec's
    calibrated BCE, ``gbce_t``); docs/method.md#losses-for-large-catalogues."""
    negatives: PositiveInt = 256
    """Negatives per batch of ``sampled_softmax`` and ``gbce``."""
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    """How ``sampled_softmax`` draws its negatives: uniformly, or by each item's count in the
    training inputs (plus one); either way logQ-corrected."""
    gbce_t: Ratio = 0.75
    """gBCE's calibration t in [0, 1]: 0 is plain BCE, 1 fully calibrated (gSASRec's 0.75)."""
    ce_chunk_items: PositiveInt | None = None
    """``ce`` computed this many items at a time, forward and backward (the same value and
    gradients without the (positions x items) logit matrix in memory); null: all at once."""

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"model.num_heads ({self.num_heads}) must divide "
                             f"model.hidden_size ({self.hidden_size})")
        return self


class IntentsConfig(Section):
    """ELCRec's learnable intents (``elcrec``, ``adarec`` with ``intents``, ``release``;
    docs/method.md#elcrec-intents)."""

    n_intents: PositiveInt = 256
    """Number of intent centres K (k-means initialised once before training)."""
    trade_off: NonNegativeFloat = 1.0
    """Weight of the clustering loss."""
    instance_weight: NonNegativeFloat = 0.1
    """Weight of the instance contrastive loss (two augmented views)."""
    intent_weight: NonNegativeFloat = 0.1
    """Weight of the intent contrastive loss (views vs the clean intent)."""
    temperature: PositiveFloat = 1.0
    """InfoNCE temperature of both contrastive losses."""
    fusion: Literal["add", "concat"] = "concat"
    """How a view's outputs are fused with their nearest centre."""
    assign: Literal["position", "sequence"] = "position"
    """``position`` (ELCRec: each position's own nearest centre) or ``sequence`` (the
    nearest centre of the pooled sequence)."""
    crop_ratio: Ratio = 0.2
    """Share of a sequence a crop keeps."""
    mask_ratio: Ratio = 0.7
    """Share of a sequence a mask hides."""
    reorder_ratio: Ratio = 0.2
    """Share of a sequence a reorder shuffles."""
    pool: Literal["real", "all"] = "real"
    """What the losses pool and flatten: ``all`` (ELCRec's: all ``max_len`` positions,
    padding included, with padding outputs as ELCRec computes them; full-width passes, so
    slower on the CPU) or ``real`` (real items only; with ELCRec's clustering weights it
    collapses the users' representations). docs/method.md#elcrec-pooling."""


class ADARecConfig(Section):
    """ADARec (``model.name=adarec``; docs/method.md#adarec). The ablations of the paper's Table 4:
    ``controller=fixed`` (without ADC), ``denoise=false`` (without HDA), ``experts=1`` (ADC +
    HDA only), ``router=constant`` (without router), ``cont_weight=0`` (without L_cont),
    ``max_depth=0`` (HP-MoE only)."""

    max_depth: NonNegativeInt = 10
    """T_max, the deepest level (the paper's grid: 4, 6, 8, 10, 12); at most
    diffusion_steps; 0 keeps only E0."""
    controller: Literal["adaptive", "fixed"] = "adaptive"
    """``adaptive`` (GRU + straight-through Gumbel-softmax) or ``fixed`` (without ADC)."""
    fixed_depth: Int = 10
    """The depth every user gets with ``controller=fixed`` (0..max_depth)."""
    gumbel_tau: PositiveFloat = 0.5
    """Gumbel-softmax temperature."""
    diffusion_steps: PositiveInt = 50
    """Steps of the linear DDPM schedule; level k uses step k."""
    beta_start: Float = 1e-4
    """First beta of the schedule (0 < beta_start <= beta_end < 1)."""
    beta_end: Float = 0.02
    """Last beta of the schedule."""
    denoise: Bool = True
    """``false`` makes every level a copy of E0 (without HDA), no denoising loss."""
    experts: Annotated[Literal[1, 2], BeforeValidator(_exact_int)] = 2
    """2 (fine + coarse) or 1 (one shared expert, constant router)."""
    router: Literal["content", "constant"] = "content"
    """``content`` (MLP on the pooled level + level embedding) or ``constant`` (0.5)."""
    intents: Bool = True
    """Put ELCRec's intent learning ([intents]) on the coarse expert."""
    cont_temperature: PositiveFloat = 0.07
    """Temperature of the trajectory contrastive loss."""
    deno_weight: NonNegativeFloat = 0.1
    """Weight of L_deno."""
    cont_weight: NonNegativeFloat = 0.1
    """Weight of L_cont."""
    expl_weight: NonNegativeFloat = 0.01
    """Weight of L_expl (negative entropy of the depth choice)."""
    eval_noise: Literal["zero", "seeded"] = "zero"
    """Levels at inference: ``zero`` noise or a ``seeded`` draw (both deterministic)."""
    # --- mechanism keys (issue 15; docs/method.md#what-the-mechanism-does-in-training) ---
    denoiser_grad: Literal["deno_only", "rec"] = "deno_only"
    """``deno_only``: eps_theta is trained by L_deno alone and L_deno trains nothing else;
    ``rec``: L_rec's and L_cont's gradients also reach eps_theta through the levels."""
    schedule: Literal["linear", "span"] = "linear"
    """``linear``: level k is step k of the linear beta schedule; ``span``: the noise std
    grows evenly over the levels, ``(k / T_max) sqrt(1 - abar_at_max)``."""
    abar_at_max: Annotated[Float, Field(gt=0, lt=1)] = 0.5
    """``abar`` of level T_max with ``schedule=span``, in (0, 1)."""
    depth_draw: Literal["position", "sequence"] = "position"
    """``position``: fresh Gumbel noise at every position; ``sequence``: one draw per
    sequence, shared by its positions."""
    # --- end of mechanism keys ---

    @model_validator(mode="after")
    def _check(self) -> ADARecConfig:
        if not 0 <= self.max_depth <= self.diffusion_steps:
            raise ValueError("adarec.max_depth must be in 0..adarec.diffusion_steps")
        if self.controller == "fixed" and not 0 <= self.fixed_depth <= self.max_depth:
            raise ValueError("adarec.fixed_depth must be in 0..adarec.max_depth")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError("adarec needs 0 < beta_start <= beta_end < 1")
        return self


class ReleaseConfig(Section):
    """The original release's two-model ensemble (``model.name=release``; docs/release.md).
    Its ELCRec-style losses take their weights from [intents] (trade_off, instance_weight,
    intent_weight)."""

    depths: DepthLists = ((4, 5), (9, 10))
    """Each member's candidate depths, one list per member (``[[4, 5], [9, 10]]``); depth d
    uses step d - 1 of the schedule (0-based), as the release does."""
    diffusion_steps: PositiveInt = 50
    """Steps of the linear schedule."""
    beta_start: Float = 1e-4
    """First beta of the schedule (0 < beta_start <= beta_end < 1)."""
    beta_end: Float = 0.02
    """Last beta of the schedule."""
    noised_weight: NonNegativeFloat = 0.5
    """Weight of the noised branch's BCE."""
    consistency_weight: NonNegativeFloat = 1e-4
    """Weight of the squared error of the noised output against the detached clean one,
    summed over D per real position."""
    entropy_weight: NonNegativeFloat = 1e-4
    """Weight of the negative entropy of the controller's mix."""
    # --- issue 21: what the released code does, or a faster option (docs/release.md) ---
    view_passes: Annotated[Literal[1, 2], BeforeValidator(_exact_int)] = 2
    """2: the augmented views run once for the instance loss and again, with their own
    dropout and noise, for the intent loss (the release); 1: one shared pass (faster)."""
    gru_reads_padding: bool = True
    """true: the controller's GRU reads all max_len columns, left padding first (the
    release); false: only the real items, packed (much cheaper on the CPU)."""
    # --- end issue 21 ---

    @model_validator(mode="after")
    def _check(self) -> ReleaseConfig:
        if not all(1 <= d <= self.diffusion_steps for m in self.depths for d in m):
            raise ValueError(f"release.depths: every depth must be in "
                             f"1..{self.diffusion_steps}; got {_lists(self.depths)}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError("release needs 0 < beta_start <= beta_end < 1")
        return self


def _lists(depths: tuple[tuple[int, ...], ...]) -> list[list[int]]:
    return [list(m) for m in depths]


class TrainConfig(Section):
    """What training computes: optimisation, early stopping, batches, the evaluation mask."""

    batch_size: PositiveInt = 256
    """Training sequences per step."""
    lr: PositiveFloat = 1e-3
    """Adam learning rate."""
    weight_decay: NonNegativeFloat = 0.0
    """Adam weight decay."""
    max_epochs: PositiveInt = 400
    """Upper bound on epochs."""
    patience: PositiveInt = 40
    """Stop after this many epochs without a better validation NDCG@20."""
    seed: NonNegativeInt = 1
    """Seeds torch, numpy and the batch order; CPU runs are repeatable."""
    history_mask: Literal["inf", "zero"] = "inf"
    """``inf`` (history and padding never ranked) or ``zero`` (the original release:
    history scores set to 0, padding and spare rows ranked)."""
    batching: Literal["random", "by_length"] = "random"
    """``random`` (a random permutation cut into batches) or ``by_length`` (random pools of
    50 batches sorted by length, batch order shuffled: less padding, but batches of like
    rows train a little worse; docs/benchmarks.md)."""
    max_minutes: PositiveFloat | None = None
    """Wall-clock limit on training (each ensemble member gets an equal share); the best
    checkpoint so far is tested and the run records ``stop_reason: time_limit``."""


class RuntimeConfig(Section):
    """Where and how fast a run goes: never what it computes, beyond floating-point rounding
    (docs/configuration.md#what-goes-in-runtime)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` (cuda when available), ``cpu`` or ``cuda``."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto`` (bf16 autocast for training on a GPU, fp32 on the CPU), ``bf16`` or ``fp32``
    (also turns TF32 off). Evaluation always scores in fp32, so rankings do not tie on
    rounding."""
    eval_batch_size: PositiveInt | None = None
    """Users per full-ranking batch; null = 512 on the CPU, 2048 on a GPU
    (docs/benchmarks.md)."""
    length_buckets: PositiveInt = 8
    """On the CPU, rows run in at most this many groups of similar length, each cut to its
    own width (the same outputs for less work); 1 turns it off. GPUs run batches whole."""
    compile: Bool = False
    """Wrap the training loss in ``torch.compile`` (for GPUs; slower on the CPU); falls back
    to eager with a warning if compilation fails."""
    compile_mode: Literal[
        "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = "default"
    """``torch.compile``'s mode (``reduce-overhead`` = CUDA graphs)."""
    memory_check: Bool = True
    """Refuse, before building anything, a configuration whose estimated memory (from below)
    exceeds the device's free memory (docs/configuration.md#memory-check)."""


class RunConfig(Section):
    """Everything a run needs. ``preset`` records where the values came from."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    intents: IntentsConfig = IntentsConfig()
    adarec: ADARecConfig = ADARecConfig()
    release: ReleaseConfig = ReleaseConfig()
    train: TrainConfig = TrainConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    output_dir: str = "runs"
    """Where run directories are created."""
    preset: str = "default"
    """The preset the values started from (recorded, not an input)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested mapping (lists, not tuples): YAML- and JSON-ready."""
        return self.model_dump(mode="json")
