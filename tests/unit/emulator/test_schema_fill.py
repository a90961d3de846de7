"""``fill_schema``: a value that fits the JSON Schema a client asks its OCR annotation to follow
(issue 13 item 15). Schemas come from pydantic models as the SDK builds them
(``response_format_from_pydantic_model``), and the value is checked by the model itself."""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from mistralai.extra import response_format_from_pydantic_model
from pydantic import BaseModel, ConfigDict, Field

from batchd.emulator.outputs import filler
from batchd.emulator.schema_fill import MAX_NODES, fill_schema


class Table(BaseModel):
    name: str = Field(description="The name or title of the table")


class TableExtraction(BaseModel):  # client-python examples/.../async_jobs_ocr_batch_annotation.py
    tables: list[Table] = Field(description="List of tables found in the document")


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=5, max_length=6)]
    short: Annotated[str, Field(max_length=2)]
    tag: Annotated[str, Field(pattern=r"^[A-Z]+$")]
    count: Annotated[int, Field(ge=3, le=4)]
    above: Annotated[int, Field(gt=10, lt=12)]
    even: Annotated[int, Field(multiple_of=2, ge=5)]
    ratio: Annotated[float, Field(gt=0, lt=1)]
    kind: Literal["invoice", "receipt"]
    colour: Colour
    maybe: int | None
    when: date
    stamp: datetime
    ident: UUID
    pairs: Annotated[list[int], Field(min_length=3, max_length=3)]
    point: tuple[int, str]
    scores: dict[str, float]
    flag: bool
    nothing: None


class Tree(BaseModel):
    label: str
    children: list[Tree]


class WithDefault(BaseModel):
    title: str = "untitled"
    pages: list[int] = []


@pytest.mark.parametrize("model", [TableExtraction, Strict, Tree, WithDefault])
@pytest.mark.parametrize("seed", [0, 1, 2**31])
def test_the_value_fits_the_model_the_schema_came_from(model: type[BaseModel], seed: int) -> None:
    response_format: Any = response_format_from_pydantic_model(model)
    schema = response_format["json_schema"]["schema"]
    value = fill_schema(schema, seed, filler)
    model.model_validate_json(json.dumps(value))  # raises if it does not fit


def test_the_value_is_deterministic_and_depends_on_the_seed() -> None:
    schema = TableExtraction.model_json_schema()
    assert fill_schema(schema, 5, filler) == fill_schema(schema, 5, filler)
    assert fill_schema(schema, 5, filler) != fill_schema(schema, 6, filler)


def test_a_shallow_object_gets_every_property_and_arrays_an_item() -> None:
    value = fill_schema(WithDefault.model_json_schema(), 1, filler)
    assert set(value) == {"title", "pages"} and len(value["pages"]) == 1


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},  # a reference loop
        {"type": "array", "minItems": 10**9, "items": {"type": "array", "minItems": 10**9}},
        {"type": "string", "minLength": 10**12},
        {"type": "integer", "minimum": 10**400, "maximum": -(10**400)},
        {"type": "number", "minimum": float("inf")},
        {"anyOf": []},
        {"type": ["null"]},
        {"$ref": "#/$defs/missing"},
        {"allOf": [{"$ref": "#/nowhere"}, 5]},
        True,
        False,
    ],
)
def test_a_hostile_schema_stays_cheap(schema: Any) -> None:
    value = fill_schema(schema, 1, filler)
    assert len(json.dumps(value)) < MAX_NODES * 100
