"""Typed run configuration: pydantic sections, YAML presets, ``section.key=value`` overrides.

A run's configuration is assembled in one place (`load_config`): the preset (default
``default``), then an optional YAML file, then command-line overrides. It is validated once,
written into the run directory, and never patched afterwards. Facts learned from the data
(number of items) live in `adarec.train.DataInfo`, not here. Every key: docs/configuration.md.
"""

from adarec.config.load import config_from_dict, load_config, preset_names, save_config
from adarec.config.sections import (
    ADARecConfig,
    DataConfig,
    IntentsConfig,
    ModelConfig,
    ReleaseConfig,
    RunConfig,
    RuntimeConfig,
    TrainConfig,
)

__all__ = [
    "ADARecConfig", "DataConfig", "IntentsConfig", "ModelConfig", "ReleaseConfig", "RunConfig",
    "RuntimeConfig", "TrainConfig", "config_from_dict", "load_config", "preset_names",
    "save_config",
]
