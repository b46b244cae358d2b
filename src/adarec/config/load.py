"""Presets (composed with ``extends``), YAML files, ``section.key=value`` overrides.

A preset is ``presets/<name>.yaml``; it and the fragments it extends (``presets/<kind>/<name>``)
may list ``extends: [fragment, ...]``: the fragments merge left to right, then the file's own
keys on top. Only top-level files are presets (`preset_names`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from adarec.config.legacy import upgrade
from adarec.config.messages import explain
from adarec.config.sections import RunConfig
from adarec.errors import AdarecError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_TOP_LEVEL = ("output_dir",)  # keys outside any section that an override may set


def _presets_dir() -> Traversable:
    return resources.files("adarec").joinpath("presets")


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    files = _presets_dir().iterdir()
    return sorted(p.name.removesuffix(".yaml") for p in files
                  if p.is_file() and p.name.endswith(".yaml"))


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AdarecError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise AdarecError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The preset or fragment ``name`` with everything it extends merged under it."""
    if name in chain:
        raise AdarecError(f"presets extend each other in a cycle: {' -> '.join((*chain, name))}")
    file = _presets_dir()
    for part in f"{name}.yaml".split("/"):
        file = file.joinpath(part)
    if not file.is_file():
        raise AdarecError(f"preset {chain[-1]} extends {name!r}, which is not a file in presets/")
    data = _read_yaml(file.read_text(), f"preset {name}")
    parents = data.pop("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = _merge(merged, _resolve(parent, (*chain, name)))
    return _merge(merged, data)


def preset_dict(name: str) -> dict[str, Any]:
    """Preset ``name`` resolved to one mapping of sections (not yet validated)."""
    if name not in preset_names():
        raise AdarecError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return _resolve(name)


def _parse_override(item: str) -> dict[str, Any]:
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    top_level = len(parts) == 1 and parts[0] in _TOP_LEVEL
    if not sep or not (top_level or (len(parts) == 2 and all(parts))):
        raise AdarecError(
            f"override {item!r} must look like section.key=value, e.g. model.hidden_size=128"
        )
    value = yaml.safe_load(raw) if raw.strip() else None
    return {parts[0]: value} if top_level else {parts[0]: {parts[1]: value}}


def _validate(data: dict[str, Any]) -> RunConfig:
    data = {k: ({} if v is None else v) for k, v in data.items()}  # "model:" alone = defaults
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, data, RunConfig) from None


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a stored mapping (a run's config.yaml, a checkpoint's config); a config of
    the old layout (docs/configuration.md#old-run-directories) is upgraded first."""
    return _validate(upgrade(data))


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
        data = upgrade(_read_yaml(text, str(path)))
    name = preset or data.get("preset") or "default"
    merged = _merge(preset_dict(name), data)
    for item in overrides:
        merged = _merge(merged, _parse_override(item))
    merged["preset"] = name
    return _validate(merged)


def save_config(config: RunConfig, path: Path) -> None:
    """Write ``config`` as YAML (loadable by `load_config(config_file=...)`)."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
