"""Request and response bodies of the HTTP API (docs/serving.md#endpoints).

Types are strict: ``"5"`` is no integer k, ``true`` is no item, ``3.0`` is no item id;
unknown fields are refused, so a misspelt option never silently takes its default. Item ids
are integers (the model's ids) or, with an item map, strings or integers (original ids).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)


def _item_id(value: object) -> int | str:
    # bool is an int subclass in Python, but true is no item id.
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    raise ValueError(f"an item id is an integer or a string, not {value!r}")


ItemIn = Annotated[int | str, PlainValidator(_item_id),
                   WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Strict):
    history: list[ItemIn] = Field(min_length=1, description="Items, oldest first.")
    k: StrictInt = Field(10, ge=1, description="How many items to return.")
    exclude_history: StrictBool = Field(True, description="Leave out the history's items.")


class BatchRequest(_Strict):
    histories: list[list[ItemIn]] = Field(min_length=1, description="One history per user.")
    k: StrictInt = Field(10, ge=1)
    exclude_history: StrictBool = True


class Recommendation(BaseModel):
    items: list[int | str] = Field(description="Best first.")
    scores: list[float] = Field(description="The model's scores of ``items``.")


class BatchResponse(BaseModel):
    results: list[Recommendation] = Field(description="One per history, in order.")


class Health(BaseModel):
    status: str


class Metadata(BaseModel):
    model: str
    dataset: str
    n_items: int
    max_len: int
    item_ids: str = Field(description="'model' (1..n_items) or 'original' (item map).")
    item_map: str | None
    engine: str
    commit: str | None = Field(description="The commit that trained the model, if known.")
    checkpoint: str
    epoch: int | None
    adarec_version: str
    config: dict[str, Any] = Field(description="A summary of the model's configuration.")
    limits: dict[str, Any] = Field(description="The server's request limits.")


class ErrorBody(BaseModel):
    error: str = Field(description="What is wrong with the request.")
    detail: Any = None
