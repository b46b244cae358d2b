"""What the benchmark scripts share: the options that pick a run, and the run they pick
(configuration, device, data and model, set up by `adarec.setup.setup_run` as for `fit`)."""

from __future__ import annotations

import argparse

from adarec.config import load_config
from adarec.setup import Run, setup_run


def add_run_args(p: argparse.ArgumentParser) -> None:
    """``--preset``, ``--dataset``, ``--data-dir``, ``--device`` and ``--set``."""
    p.add_argument("--preset", required=True, help="preset name (see `adarec presets`)")
    p.add_argument("--dataset", help="benchmark name, 'synthetic' or 'file'")
    p.add_argument("--data-dir", help="directory holding the benchmark files")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: the preset's runtime.device (auto = cuda when available)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override section.key=value (repeatable)")


def prepare_run(args: argparse.Namespace) -> Run:
    """The configuration the options name, seeded, with its data and model built."""
    overrides = list(args.overrides)
    for key, value in (("data.dataset", args.dataset), ("data.data_dir", args.data_dir),
                       ("runtime.device", args.device)):
        if value:
            overrides.append(f"{key}={value}")
    return setup_run(load_config(args.preset, overrides=overrides))
