"""pydantic's `ValidationError` as one `AdarecError` line naming each key, value and rule."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from adarec.config.legacy import MOVED
from adarec.errors import AdarecError

# pydantic error type -> what the value must be (formatted with the error's context).
_RULES = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "finite_number": "must be a finite number (not nan or inf)",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be {expected}",
}


def _rule(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if err["type"] == "value_error":
        return str(ctx.get("error", err["msg"]))
    if err["type"] == "greater_than" and ctx.get("gt") == 0:
        return "must be positive"
    if err["type"] in _RULES:
        return _RULES[err["type"]].format(**ctx)
    return err["msg"][:1].lower() + err["msg"][1:]


def _unknown(section: str | None, keys: list[str], schema: type[BaseModel]) -> str:
    fields = schema.model_fields if section is None else _section_type(schema, section).model_fields
    known = ", ".join(fields)
    if section is None:
        return f"unknown config section(s): {', '.join(keys)}; known: {known}"
    named = [k + (f" (moved to {'.'.join(MOVED[section, k])})" if (section, k) in MOVED else "")
             for k in keys]
    return f"unknown key(s) in [{section}]: {', '.join(named)}; known: {known}"


def _sections(schema: type[BaseModel]) -> set[str]:
    return {name for name, f in schema.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


def _section_type(schema: type[BaseModel], section: str) -> type[BaseModel]:
    return schema.model_fields[section].annotation  # type: ignore[return-value]


def explain(exc: ValidationError, data: dict[str, Any], schema: type[BaseModel]) -> AdarecError:
    """One line for all of ``exc``'s errors; ``data`` is the mapping that was validated."""
    lines: list[str] = []
    unknown: dict[str | None, list[str]] = {}
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        if err["type"] == "extra_forbidden":
            unknown.setdefault(loc[0] if len(loc) > 1 else None, []).append(loc[-1])
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            lines.append(f"config section [{loc[0]}] must be a mapping; got {err['input']!r}")
        elif len(loc) >= 2:  # one key (of a section)
            section = data.get(loc[0])
            value = section.get(loc[1]) if isinstance(section, dict) else err["input"]
            lines.append(f"{loc[0]}.{loc[1]} {_rule(err)}; got {value!r}")
        elif loc and loc[0] not in _sections(schema):  # a top-level key
            lines.append(f"{loc[0]} {_rule(err)}; got {err['input']!r}")
        else:  # a check across keys of one section: its message names them
            lines.append(_rule(err))
    lines = [_unknown(s, keys, schema) for s, keys in unknown.items()] + lines
    return AdarecError(". ".join(lines))
