"""Typed run configuration: frozen dataclasses, YAML presets, `section.key=value` overrides.

A run's configuration is assembled in one place (`load_config`): the preset (default
``default``), then an optional YAML file, then command-line overrides. It is validated once,
written into the run directory, and never patched afterwards. Facts learned from the data
(number of items) live in `adarec.train.DataInfo`, not here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from adarec.errors import AdarecError


@dataclass(frozen=True)
class DataConfig:
    """Which interactions to use and how to cut them.

    dataset: a registered benchmark (Beauty, Sports_and_Outdoors, Toys_and_Games, Yelp),
        ``synthetic`` (built-in, generated on the fly), or ``file`` (read ``data_file``).
    data_file: path of a sequence file (``user item item ...``) when dataset is ``file``.
    data_dir: directory holding the benchmark files (else $ADAREC_DATA_DIR, else download).
    max_len: inputs keep their last ``max_len`` items.
    shorten_seq_to: sparse protocol k (keep the last k history items, max_len = k + 3).
    synthetic_users / synthetic_items / synthetic_seed: size and seed of the synthetic data.
    """

    dataset: str = "synthetic"
    data_file: str | None = None
    data_dir: str | None = None
    max_len: int = 50
    shorten_seq_to: int | None = None
    synthetic_users: int = 2000
    synthetic_items: int = 500
    synthetic_seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """The model and its sizes.

    name: ``sasrec``, ``elcrec`` (SASRec + the [intents] part), ``adarec`` (the paper's
        model, configured by [adarec]; its coarse expert carries the [intents] part) or
        ``release`` (the original release's two-model ensemble, configured by [release]).
    hidden_size: embedding and transformer width D.
    num_layers: transformer blocks.
    num_heads: attention heads (must divide hidden_size).
    attn_dropout: dropout on attention probabilities.
    hidden_dropout: dropout on embeddings and sub-layer outputs.
    rec_loss: ``ce`` (full-softmax cross-entropy, default) or ``bce`` (one sampled negative
        per position, as the original release trains).
    """

    name: str = "sasrec"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    attn_dropout: float = 0.5
    hidden_dropout: float = 0.5
    rec_loss: str = "ce"


@dataclass(frozen=True)
class IntentsConfig:
    """ELCRec's learnable intents (used by ``elcrec``; docs/method.md#elcrec-intents).

    n_intents: number of intent centres K (k-means initialised once before training).
    trade_off: weight of the clustering loss.
    instance_weight: weight of the instance contrastive loss (two augmented views).
    intent_weight: weight of the intent contrastive loss (views vs the clean intent).
    temperature: InfoNCE temperature of both contrastive losses.
    fusion: ``add`` or ``concat``: how view outputs are fused with their nearest centre.
    assign: ``position`` (ELCRec: each position's own nearest centre) or ``sequence``.
    crop_ratio / mask_ratio / reorder_ratio: the augmentation operators' ratios.
    """

    n_intents: int = 256
    trade_off: float = 1.0
    instance_weight: float = 0.1
    intent_weight: float = 0.1
    temperature: float = 1.0
    fusion: str = "concat"
    assign: str = "position"
    crop_ratio: float = 0.2
    mask_ratio: float = 0.7
    reorder_ratio: float = 0.2


@dataclass(frozen=True)
class ADARecConfig:
    """ADARec (used by ``adarec``; docs/method.md#adarec). The ablations of the paper's Table 4:
    ``controller=fixed`` (without ADC), ``denoise=false`` (without HDA), ``experts=1``
    (ADC + HDA only), ``router=constant`` (without router), ``cont_weight=0`` (without
    L_cont), ``max_depth=0`` (HP-MoE only).

    max_depth: T_max, the deepest level (the paper's grid: 4, 6, 8, 10, 12).
    controller: ``adaptive`` (GRU + straight-through Gumbel-softmax) or ``fixed``.
    fixed_depth: the depth every user gets with ``controller=fixed``.
    gumbel_tau: Gumbel-softmax temperature.
    diffusion_steps / beta_start / beta_end: the linear DDPM schedule; level k uses step k.
    denoise: ``false`` makes every level a copy of E0 (no diffusion, no denoising loss).
    experts: 2 (fine + coarse) or 1 (one shared expert, constant router).
    router: ``content`` (MLP on the pooled level + level embedding) or ``constant`` (0.5).
    intents: put ELCRec's intent learning ([intents]) on the coarse expert.
    cont_temperature: temperature of the trajectory contrastive loss.
    deno_weight / cont_weight / expl_weight: weights of L_deno, L_cont and L_expl.
    eval_noise: ``zero`` (noise-free levels at inference) or ``seeded`` (fixed-seed noise).
    """

    max_depth: int = 10
    controller: str = "adaptive"
    fixed_depth: int = 10
    gumbel_tau: float = 0.5
    diffusion_steps: int = 50
    beta_start: float = 1e-4
    beta_end: float = 0.02
    denoise: bool = True
    experts: int = 2
    router: str = "content"
    intents: bool = True
    cont_temperature: float = 0.07
    deno_weight: float = 0.1
    cont_weight: float = 0.1
    expl_weight: float = 0.01
    eval_noise: str = "zero"


@dataclass(frozen=True)
class ReleaseConfig:
    """The original release's two-model ensemble (used by ``release``; docs/release.md).

    depths: each member's candidate depths, members separated by ``;`` (``"4,5;9,10"``);
        depth d uses step d - 1 of the schedule (0-based), as the release does.
    diffusion_steps / beta_start / beta_end: the linear schedule (50 steps, 1e-4 .. 0.02).
    noised_weight: weight of the noised branch's BCE.
    consistency_weight: weight of the masked MSE(noised output, detached clean output).
    entropy_weight: weight of the negative entropy of the controller's mix.
    The ELCRec-style losses take their weights from [intents] (trade_off, instance_weight,
    intent_weight).
    """

    depths: str = "4,5;9,10"
    diffusion_steps: int = 50
    beta_start: float = 1e-4
    beta_end: float = 0.02
    noised_weight: float = 0.5
    consistency_weight: float = 1e-4
    entropy_weight: float = 1e-4

    def member_depths(self) -> list[tuple[int, ...]]:
        """``depths`` parsed: one tuple of candidate depths per member."""
        try:
            members = [tuple(int(d) for d in part.split(",")) for part in self.depths.split(";")]
        except ValueError:
            raise AdarecError(
                f"release.depths must look like '4,5;9,10', got {self.depths!r}"
            ) from None
        for depths in members:
            if not depths or not all(1 <= d <= self.diffusion_steps for d in depths):
                raise AdarecError(
                    f"release.depths: every depth must be in 1..{self.diffusion_steps}"
                )
        return members


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, early stopping and evaluation.

    batch_size: training sequences per step.
    lr / weight_decay: Adam settings.
    max_epochs: upper bound on epochs.
    patience: stop after this many epochs without a better validation NDCG@20.
    seed: seeds torch, numpy and the batch order; CPU runs are repeatable.
    device: ``auto`` (cuda when available), ``cpu`` or ``cuda``.
    eval_batch_size: users per full-ranking batch; null (default) = 512 on the CPU, 2048 on
        a GPU (measured faster there: docs/benchmarks.md).
    history_mask: ``inf`` (history and padding never ranked, default) or ``zero`` (the
        original release: history scores set to 0, padding and spare rows ranked).
    precision: ``auto`` (bf16 autocast for training on a GPU, fp32 on the CPU), ``bf16`` or
        ``fp32``. Evaluation always scores in fp32 (TF32 matrix units on a GPU unless
        ``fp32``), so rankings do not tie on rounding.
    batching: ``random`` (a random permutation cut into batches) or ``by_length`` (random
        pools of 50 batches sorted by length, batch order shuffled: less padding still, but
        batches of like rows train a little worse; see docs/benchmarks.md).
    length_buckets: on the CPU, rows run in at most this many groups of similar length, each
        cut to its own width, chosen to compute the fewest positions (same outputs, less
        work): inside each encoder call, around ADARec's whole trajectory and the release's
        encoder passes, and in the instance losses' Gram matrix of flattened views; 1 turns it
        off. GPUs always run the batch whole.
    compile: wrap the training loss in ``torch.compile`` (on a GPU one graph per model,
        GRUs included; on the CPU length groups break it); falls back to eager with a
        warning if compilation fails. For GPUs: on the CPU it is slower.
    compile_mode: ``torch.compile``'s mode: ``default``, ``reduce-overhead`` (CUDA graphs),
        ``max-autotune`` or ``max-autotune-no-cudagraphs``.
    max_minutes: wall-clock limit on training (each ensemble member gets an equal share);
        the best checkpoint so far is tested and the run records ``stop_reason: time_limit``.
    """

    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 400
    patience: int = 40
    seed: int = 1
    device: str = "auto"
    eval_batch_size: int | None = None
    history_mask: str = "inf"
    precision: str = "auto"
    batching: str = "random"
    length_buckets: int = 8
    compile: bool = False
    compile_mode: str = "default"
    max_minutes: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs. ``preset`` records where the values came from."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    intents: IntentsConfig = field(default_factory=IntentsConfig)
    adarec: ADARecConfig = field(default_factory=ADARecConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs"
    preset: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)


_CHOICES = {
    ("data", "dataset"): None,  # checked when the data is loaded
    ("model", "name"): ("sasrec", "elcrec", "adarec", "release"),
    ("adarec", "controller"): ("adaptive", "fixed"),
    ("adarec", "experts"): (1, 2),
    ("adarec", "router"): ("content", "constant"),
    ("adarec", "eval_noise"): ("zero", "seeded"),
    ("intents", "fusion"): ("add", "concat"),
    ("intents", "assign"): ("position", "sequence"),
    ("model", "rec_loss"): ("ce", "bce"),
    ("train", "device"): ("auto", "cpu", "cuda"),
    ("train", "history_mask"): ("inf", "zero"),
    ("train", "precision"): ("auto", "bf16", "fp32"),
    ("train", "batching"): ("random", "by_length"),
    ("train", "compile_mode"): ("default", "reduce-overhead", "max-autotune",
                                "max-autotune-no-cudagraphs"),
}
_POSITIVE = {
    ("data", "max_len"), ("data", "synthetic_users"), ("data", "synthetic_items"),
    ("model", "hidden_size"), ("model", "num_layers"), ("model", "num_heads"),
    ("train", "batch_size"), ("train", "max_epochs"), ("train", "patience"),
    ("train", "lr"), ("train", "length_buckets"),
    ("intents", "n_intents"),
    ("intents", "temperature"),
}


_NON_NEGATIVE = {
    ("data", "synthetic_seed"), ("train", "weight_decay"), ("train", "seed"),
    ("intents", "trade_off"), ("intents", "instance_weight"), ("intents", "intent_weight"),
    ("adarec", "deno_weight"), ("adarec", "cont_weight"), ("adarec", "expl_weight"),
    ("release", "noised_weight"), ("release", "consistency_weight"),
    ("release", "entropy_weight"),
}


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    files = resources.files("adarec").joinpath("presets").iterdir()
    return sorted(p.name.removesuffix(".yaml") for p in files if p.name.endswith(".yaml"))


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AdarecError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise AdarecError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _preset_dict(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise AdarecError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    text = resources.files("adarec").joinpath("presets", f"{name}.yaml").read_text()
    return _read_yaml(text, f"preset {name}")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> dict[str, Any]:
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    top_level = len(parts) == 1 and parts[0] in ("output_dir",)
    if not sep or not (top_level or (len(parts) == 2 and all(parts))):
        raise AdarecError(
            f"override {item!r} must look like section.key=value, e.g. model.hidden_size=128"
        )
    value = yaml.safe_load(raw) if raw.strip() else None
    return {parts[0]: value} if top_level else {parts[0]: {parts[1]: value}}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint (int, float, str, bool, X | None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads "1e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise AdarecError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build_section(cls: type, values: dict[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise AdarecError(
            f"unknown key(s) in [{section}]: {', '.join(sorted(unknown))}; "
            f"known: {', '.join(hints)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a `RunConfig` from a nested mapping (e.g. a saved config.yaml)."""
    sections = {
        "data": DataConfig, "model": ModelConfig, "intents": IntentsConfig,
        "adarec": ADARecConfig, "release": ReleaseConfig, "train": TrainConfig,
    }
    unknown = set(data) - set(sections) - {"output_dir", "preset"}
    if unknown:
        raise AdarecError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    built = {}
    for name, cls in sections.items():
        values = data.get(name) or {}
        if not isinstance(values, dict):
            raise AdarecError(f"config section [{name}] must be a mapping")
        built[name] = _build_section(cls, values, name)
    config = RunConfig(
        **built,
        output_dir=_coerce(data.get("output_dir", "runs"), str, "output_dir"),
        preset=_coerce(data.get("preset", "default"), str, "preset"),
    )
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    """Raise `AdarecError` naming the first setting that makes no sense."""
    for (section, key), choices in _CHOICES.items():
        value = getattr(getattr(config, section), key)
        if choices is not None and value not in choices:
            allowed = ", ".join(str(c) for c in choices)
            raise AdarecError(f"{section}.{key} must be one of {allowed}; got {value!r}")
    for section, key in _POSITIVE:
        value = getattr(getattr(config, section), key)
        if value <= 0:
            raise AdarecError(f"{section}.{key} must be positive; got {value!r}")
    for section, key in _NON_NEGATIVE:
        if getattr(getattr(config, section), key) < 0:
            raise AdarecError(f"{section}.{key} must be >= 0")
    if config.data.shorten_seq_to is not None and config.data.shorten_seq_to < 1:
        raise AdarecError(f"data.shorten_seq_to must be >= 1; got {config.data.shorten_seq_to}")
    if config.train.eval_batch_size is not None and config.train.eval_batch_size < 1:
        raise AdarecError(f"train.eval_batch_size must be positive; got "
                          f"{config.train.eval_batch_size}")
    if config.train.max_minutes is not None and config.train.max_minutes <= 0:
        raise AdarecError(f"train.max_minutes must be positive; got {config.train.max_minutes}")
    for key in ("attn_dropout", "hidden_dropout"):
        if not 0.0 <= getattr(config.model, key) < 1.0:
            raise AdarecError(f"model.{key} must be in [0, 1)")
    if config.model.hidden_size % config.model.num_heads:
        raise AdarecError(
            f"model.num_heads ({config.model.num_heads}) must divide "
            f"model.hidden_size ({config.model.hidden_size})"
        )
    for key in ("crop_ratio", "mask_ratio", "reorder_ratio"):
        if not 0.0 <= getattr(config.intents, key) <= 1.0:
            raise AdarecError(f"intents.{key} must be in [0, 1]")
    a = config.adarec
    if not 0 <= a.max_depth <= a.diffusion_steps:
        raise AdarecError("adarec.max_depth must be in 0..adarec.diffusion_steps")
    if a.controller == "fixed" and not 0 <= a.fixed_depth <= a.max_depth:
        raise AdarecError("adarec.fixed_depth must be in 0..adarec.max_depth")
    if not 0.0 < a.beta_start <= a.beta_end < 1.0:
        raise AdarecError("adarec needs 0 < beta_start <= beta_end < 1")
    config.release.member_depths()
    if config.data.dataset == "file" and not config.data.data_file:
        raise AdarecError("data.dataset is 'file' but no data.data_file was given")


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """Preset, then YAML file, then ``section.key=value`` overrides; validated once."""
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise AdarecError(f"cannot read config file {path}: {exc.strerror}") from None
        data = _read_yaml(text, str(path))
    name = preset or data.get("preset") or "default"
    merged = _merge(_preset_dict(name), data)
    for item in overrides:
        merged = _merge(merged, _parse_override(item))
    merged["preset"] = name
    return config_from_dict(merged)


def save_config(config: RunConfig, path: Path) -> None:
    """Write ``config`` as YAML (loadable by `load_config(config_file=...)`)."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
