"""Typed configuration: presets, YAML files, `section.key=value` overrides, validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from adarec.config import RunConfig, load_config, preset_names, save_config
from adarec.errors import AdarecError


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_records_its_name(name: str):
    config = load_config(name)
    assert isinstance(config, RunConfig)
    assert config.preset == name


def test_default_preset_is_shipped_and_used_when_none_is_named():
    assert "default" in preset_names()
    assert load_config() == load_config("default")


def test_sasrec_beauty_preset_values():
    config = load_config("sasrec-beauty")
    assert config.data.dataset == "Beauty"
    assert (config.model.hidden_size, config.model.num_layers, config.model.num_heads) == (
        64, 1, 2,
    )


def test_overrides_are_typed_by_yaml():
    config = load_config(
        "default",
        overrides=[
            "model.hidden_size=32",
            "train.lr=0.005",
            "data.shorten_seq_to=5",
            "model.rec_loss=bce",
            "data.data_dir=/some/where",
        ],
    )
    assert config.model.hidden_size == 32 and type(config.model.hidden_size) is int
    assert config.train.lr == 0.005 and type(config.train.lr) is float
    assert config.data.shorten_seq_to == 5
    assert config.model.rec_loss == "bce"
    assert config.data.data_dir == "/some/where"


@pytest.mark.parametrize("raw", ["null", "~", ""])
def test_override_to_none(raw: str):
    base = load_config(overrides=["data.shorten_seq_to=5"])
    assert base.data.shorten_seq_to == 5
    config = load_config(overrides=["data.shorten_seq_to=5", f"data.shorten_seq_to={raw}"])
    assert config.data.shorten_seq_to is None


def test_int_is_accepted_for_a_float():
    config = load_config(overrides=["train.lr=1", "model.attn_dropout=0"])
    assert config.train.lr == 1.0 and type(config.train.lr) is float
    assert config.model.attn_dropout == 0.0 and type(config.model.attn_dropout) is float


def test_later_override_wins():
    config = load_config(overrides=["model.hidden_size=32", "model.hidden_size=48"])
    assert config.model.hidden_size == 48


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("nosuchsection.key=1", "nosuchsection"),
        ("model.nosuchkey=1", "nosuchkey"),
        ("train.nosuchkey=1", "nosuchkey"),
    ],
)
def test_unknown_section_or_key_is_named(override: str, named: str):
    with pytest.raises(AdarecError, match=named):
        load_config(overrides=[override])


@pytest.mark.parametrize("override", ["model.hidden_size", "hidden_size=3", "a.b.c=1", ".x=1"])
def test_malformed_override(override: str):
    with pytest.raises(AdarecError, match="section.key=value"):
        load_config(overrides=[override])


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.rec_loss=xyz", "model.rec_loss"),
        ("runtime.device=tpu", "runtime.device"),
        ("train.history_mask=nan", "train.history_mask"),
        ("model.name=gpt", "model.name"),
    ],
)
def test_bad_choice(override: str, named: str):
    with pytest.raises(AdarecError, match=named):
        load_config(overrides=[override])


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.hidden_size=abc", "model.hidden_size"),
        ("model.hidden_size=1.5", "model.hidden_size"),
        ("model.hidden_size=true", "model.hidden_size"),
        ("train.lr=fast", "train.lr"),
        ("model.hidden_size=0", "model.hidden_size"),
        ("train.batch_size=-1", "train.batch_size"),
        ("model.attn_dropout=1.0", "model.attn_dropout"),
        ("data.shorten_seq_to=0", "data.shorten_seq_to"),
    ],
)
def test_bad_value_is_named(override: str, named: str):
    with pytest.raises(AdarecError, match=named.replace(".", r"\.")):
        load_config(overrides=[override])


def test_num_heads_must_divide_hidden_size():
    with pytest.raises(AdarecError, match="num_heads"):
        load_config(overrides=["model.hidden_size=64", "model.num_heads=3"])
    assert load_config(overrides=["model.hidden_size=48", "model.num_heads=3"]).model.num_heads


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(AdarecError, match="unknown preset 'nope'.*default"):
        load_config("nope")


def test_file_dataset_needs_a_file():
    with pytest.raises(AdarecError, match="data_file"):
        load_config(overrides=["data.dataset=file"])


def test_yaml_file_over_preset_and_overrides_over_file(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  hidden_size: 32\n  num_layers: 3\ntrain:\n  lr: 0.01\n")
    config = load_config("sasrec-beauty", config_file=path, overrides=["model.num_layers=4"])
    assert config.preset == "sasrec-beauty"
    assert config.data.dataset == "Beauty"  # from the preset
    assert config.model.hidden_size == 32  # from the file
    assert config.train.lr == 0.01  # from the file
    assert config.model.num_layers == 4  # the override wins over the file
    assert config.model.attn_dropout == load_config("sasrec-beauty").model.attn_dropout


def test_yaml_file_may_name_its_preset(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: sasrec-beauty\ntrain:\n  max_epochs: 3\n")
    config = load_config(config_file=path)
    assert config.preset == "sasrec-beauty"
    assert config.data.dataset == "Beauty"
    assert config.train.max_epochs == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: [1, 2\n", "not valid YAML"),
        ("- a\n- b\n", "mapping"),
        ("model:\n  wings: 2\n", "wings"),
        ("extra:\n  x: 1\n", "extra"),
        ("model: 3\n", r"\[model\]"),
    ],
)
def test_bad_yaml_file(tmp_path: Path, text: str, match: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AdarecError, match=match):
        load_config(config_file=path)


def test_missing_yaml_file(tmp_path: Path):
    with pytest.raises(AdarecError, match="cannot read config file"):
        load_config(config_file=tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", preset_names())
def test_save_then_load_round_trip(tmp_path: Path, name: str):
    config = load_config(
        name,
        overrides=["data.shorten_seq_to=5", "train.lr=0.002", "data.data_dir=/d", "train.seed=7"],
    )
    path = tmp_path / "config.yaml"
    save_config(config, path)
    assert load_config(config_file=path) == config


def test_configs_are_frozen():
    config = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        config.model.hidden_size = 8  # type: ignore[misc]


def test_override_accepts_exponent_notation_for_floats():
    assert load_config(overrides=["train.lr=1e-3"]).train.lr == pytest.approx(1e-3)


@pytest.mark.parametrize("override", ["train.weight_decay=-0.1", "data.synthetic_seed=-1"])
def test_negative_values_that_fail_later_are_rejected_up_front(override: str):
    with pytest.raises(AdarecError, match=override.split("=")[0].replace(".", r"\.")):
        load_config(overrides=[override])


def _documented_rows() -> dict[str, dict[str, str]]:
    """docs/configuration.md's tables: heading (section name or "") -> key -> default cell."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    rows: dict[str, dict[str, str]] = {}
    for block in re.split(r"^## ", doc, flags=re.M)[1:]:
        heading = re.match(r"`(\w+)`", block)
        cells = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", block, flags=re.M)
        section = rows.setdefault(heading.group(1) if heading else "", {})
        section.update((k, v.strip().strip("`")) for k, v in cells)
    return rows


def test_every_config_key_is_documented():
    """Every key has a description in the code, and docs/configuration.md lists it in its
    section with its default (docs stay in step)."""
    rows = _documented_rows()
    defaults = RunConfig().to_dict()
    for name, field in RunConfig.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            keys = [(name, k, f, defaults[name][k]) for k, f in section.model_fields.items()]
        else:
            keys = [("", name, field, defaults[name])]
        for heading, key, f, default in keys:
            where = f"{heading}.{key}".lstrip(".")
            assert f.description, f"{where} has no description"
            shown = default if isinstance(default, str) else json.dumps(default)
            assert rows.get(heading, {}).get(key) == shown, (where, shown)
