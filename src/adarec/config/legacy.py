"""Configs written before the typed layout (run directories' config.yaml, checkpoints).

Until 2026-12 the speed and device knobs sat in [train] and ``release.depths`` was a string
(``"4,5;9,10"``). `upgrade` maps such a mapping to today's layout; a mapping already in it
passes unchanged. Only stored configs are upgraded: ``--set`` overrides use today's names
(an old name is refused with its new one).
"""

from __future__ import annotations

from typing import Any

from adarec.errors import AdarecError

MOVED = {("train", key): ("runtime", key) for key in (
    "device", "precision", "eval_batch_size", "length_buckets", "compile", "compile_mode",
)}


def _old_depths(text: str) -> list[list[int]]:
    try:
        members = [[int(d) for d in part.split(",")] for part in text.split(";")]
    except ValueError:
        raise AdarecError(f"release.depths: {text!r} is neither a list of depth lists such as "
                          "[[4, 5], [9, 10]] nor the old form '4,5;9,10'") from None
    return members


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with moved keys at their new places and old-form values rewritten."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (old_section, key), (section, new_key) in MOVED.items():
        old = out.get(old_section)
        if not isinstance(old, dict) or key not in old:
            continue
        new = out.setdefault(section, {})
        if not isinstance(new, dict):
            continue  # validation names the bad section
        if new_key in new:
            raise AdarecError(f"both {old_section}.{key} (its old place) and {section}.{new_key} "
                              "are given; keep only the second")
        new[new_key] = old.pop(key)
    release = out.get("release")
    if isinstance(release, dict) and isinstance(release.get("depths"), str):
        release["depths"] = _old_depths(release["depths"])
    return out
