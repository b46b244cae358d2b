"""The typed config against what the dataclass config (b5f0020) wrote: presets, old run files.

``fixtures/preset_configs.json`` holds every preset as the old code resolved it (16 separate
files and ``default``); ``fixtures/old-release-config.yaml`` is a run's config.yaml as the old
code saved it (release-beauty with speed knobs set). The renames below are written out here,
not taken from `adarec.config.legacy`, so that both sides are checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from adarec.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from adarec.config import RunConfig, config_from_dict, load_config, preset_names
from adarec.config import load as config_load
from adarec.data.load import DataInfo
from adarec.errors import AdarecError
from adarec.model.build import build_model

FIXTURES = Path(__file__).parent / "fixtures"
OLD_PRESETS = json.loads((FIXTURES / "preset_configs.json").read_text())
RUNTIME = ("device", "precision", "eval_batch_size", "length_buckets", "compile", "compile_mode")


def _old_to_new_flat(old: dict[str, Any]) -> dict[str, Any]:
    """The old layout's values under today's keys, flattened to ``section.key``."""
    flat = {}
    for section, values in old.items():
        if not isinstance(values, dict):
            flat[section] = values
            continue
        for key, value in values.items():
            if section == "train" and key in RUNTIME:
                section_now = "runtime"
            else:
                section_now = section
            if (section, key) == ("release", "depths"):
                value = [[int(d) for d in m.split(",")] for m in value.split(";")]
            flat[f"{section_now}.{key}"] = value
    return flat


def _flat(config) -> dict[str, Any]:
    out = {}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


# Presets added since the fixture was dumped (they have no old values to match).
NEW_PRESETS = {"adarec-beauty-h64"}


def test_the_same_presets_are_listed():
    assert preset_names() == sorted({*OLD_PRESETS, *NEW_PRESETS})


# Keys added since the fixture was dumped whose value a preset sets on purpose (issue 39:
# the elcrec presets pool as ELCRec does). Every other added key keeps its default.
ADDED_ON_PURPOSE = {name: {"intents.pool": "all"} for name in
                    ("elcrec-beauty", "elcrec-sports", "elcrec-toys", "elcrec-yelp")}


@pytest.mark.parametrize("name", sorted(OLD_PRESETS))
def test_each_preset_resolves_to_exactly_its_old_values(name: str):
    new, old = _flat(load_config(name)), _old_to_new_flat(OLD_PRESETS[name])
    assert {k: new.get(k, "missing") for k in old} == old
    # A key added since the fixture was dumped keeps its default in every preset.
    defaults = {**_flat(RunConfig()), **ADDED_ON_PURPOSE.get(name, {})}
    assert {k: v for k, v in new.items() if k not in old and k != "preset"} == {
        k: v for k, v in defaults.items() if k not in old and k != "preset"}


@pytest.mark.parametrize("name", sorted(OLD_PRESETS))
def test_an_old_stored_config_of_each_preset_loads_as_the_preset(name: str):
    """An old run's stored config means what it meant: a key added since takes its default
    (so an old elcrec run resumes with `intents.pool=real`, as it trained)."""
    added = [f"{k}={v}" for k, v in ADDED_ON_PURPOSE.get(name, {}).items()]
    stored = config_from_dict(OLD_PRESETS[name])
    assert stored == load_config(name, overrides=[
        f"{k}={_flat(RunConfig())[k]}" for k in ADDED_ON_PURPOSE.get(name, {})])
    if added:
        assert stored != load_config(name)


def test_an_old_run_directory_config_yaml_loads(tmp_path: Path):
    config = load_config(config_file=FIXTURES / "old-release-config.yaml")
    old = yaml.safe_load((FIXTURES / "old-release-config.yaml").read_text())
    new, expected = _flat(config), _old_to_new_flat(old)
    assert {k: new.get(k, "missing") for k in expected} == expected  # later keys: defaults
    r = config.runtime
    assert (r.device, r.precision, r.eval_batch_size, r.length_buckets, r.compile,
            r.compile_mode) == ("cpu", "fp32", 100, 3, True, "max-autotune")
    assert config.release.depths == ((3,), (7, 8, 9))
    assert config.preset == "release-beauty"


def _old_layout(config) -> dict[str, Any]:
    data = config.to_dict()
    # The old layout had the runtime keys of its day in [train]; later keys did not exist.
    data["train"].update({k: v for k, v in data.pop("runtime").items() if k in RUNTIME})
    data["release"]["depths"] = ";".join(",".join(map(str, m)) for m in data["release"]["depths"])
    return data


def test_an_old_checkpoint_loads(tmp_path: Path):
    config = load_config(overrides=["model.hidden_size=16", "runtime.length_buckets=2",
                                    "runtime.device=cpu"])
    info = DataInfo(n_users=5, n_items=30, n_interactions=40, max_len=50, source="test")
    model = build_model(config, n_items=30, max_len=50)
    path = tmp_path / "best.pt"
    save_checkpoint(path, model=model, config=config, info=info, epoch=1, metrics={})
    state = torch.load(path, weights_only=True)
    state["config"] = _old_layout(config)
    assert "runtime" not in state["config"] and "length_buckets" in state["config"]["train"]
    torch.save(state, path)
    _, loaded, _ = model_from_checkpoint(load_checkpoint(path))
    assert loaded == config


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"release": {"depths": "4,x;9"}}, "old form '4,5;9,10'"),
        ({"runtime": {"device": "cpu"}}, "both train.device"),
        ({"train": {"length_buckets": 0}}, "runtime.length_buckets must be positive"),
    ],
)
def test_a_broken_old_config_yaml_fails_clearly(tmp_path: Path, change, match: str):
    data = yaml.safe_load((FIXTURES / "old-release-config.yaml").read_text())
    for section, values in change.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(AdarecError, match=match):
        load_config(config_file=path)


def test_overrides_use_todays_names_and_say_where_a_key_moved():
    with pytest.raises(AdarecError, match=r"length_buckets \(moved to runtime.length_buckets\)"):
        load_config(overrides=["train.length_buckets=1"])
    with pytest.raises(AdarecError, match="release.depths must be a list"):
        load_config("release-beauty", overrides=["release.depths=4,5;9,10"])


def test_depths_are_lists_of_lists():
    config = load_config("release-beauty", overrides=["release.depths=[[3], [7, 8]]"])
    assert config.release.depths == ((3,), (7, 8))
    assert config.to_dict()["release"]["depths"] == [[3], [7, 8]]
    for bad in ("[]", "[[]]", "[[4, 5], 9]", "[[4.0]]", "[[true]]"):
        with pytest.raises(AdarecError, match="release.depths must be a list"):
            load_config("release-beauty", overrides=[f"release.depths={bad}"])
    with pytest.raises(AdarecError, match=r"every depth must be in 1\.\.50"):
        load_config("release-beauty", overrides=["release.depths=[[4, 51]]"])


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", ".inf", "-.inf", "1e999"])
@pytest.mark.parametrize("key", ["train.lr", "adarec.gumbel_tau", "train.max_minutes",
                                 "adarec.beta_end", "intents.trade_off"])
def test_non_finite_floats_are_refused(key: str, value: str):
    with pytest.raises(AdarecError, match=re.escape(key) + " must be a finite number"):
        load_config(overrides=[f"{key}={value}"])


def test_several_errors_come_as_one_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hidden_size: 1.5\n  wings: 2\ntrain:\n  lr: .nan\n")
    with pytest.raises(AdarecError) as err:
        load_config(config_file=path)
    message = str(err.value)
    assert "\n" not in message
    for part in ("wings", "model.hidden_size must be an integer; got 1.5",
                 "train.lr must be a finite number"):
        assert part in message


def _fragments(tmp_path: Path, files: dict[str, str], monkeypatch) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(config_load, "_presets_dir", lambda: tmp_path)


def test_extends_merges_left_to_right_then_the_files_own_keys(tmp_path: Path, monkeypatch):
    _fragments(tmp_path, {
        "p.yaml": "extends: [a/one, b/two]\nmodel:\n  num_layers: 4\n",
        "a/one.yaml": "model:\n  hidden_size: 32\n  num_layers: 1\ntrain:\n  lr: 0.1\n",
        "b/two.yaml": "extends: a/three\nmodel:\n  hidden_size: 48\n",
        "a/three.yaml": "train:\n  lr: 0.2\n  patience: 3\n",
    }, monkeypatch)
    assert config_load.preset_names() == ["p"]  # fragments in folders are not presets
    config = load_config("p")
    assert (config.model.hidden_size, config.model.num_layers) == (48, 4)
    assert (config.train.lr, config.train.patience) == (0.2, 3)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"p.yaml": "extends: [x/missing]\n"}, "extends 'x/missing'"),
        ({"p.yaml": "extends: [a/one]\n", "a/one.yaml": "extends: [a/two]\n",
          "a/two.yaml": "extends: [a/one]\n"}, "cycle: p -> a/one -> a/two -> a/one"),
    ],
)
def test_a_bad_extends_is_named(tmp_path: Path, monkeypatch, files, match: str):
    _fragments(tmp_path, files, monkeypatch)
    with pytest.raises(AdarecError, match=match):
        load_config("p")
