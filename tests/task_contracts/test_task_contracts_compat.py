"""`task_contracts.compat`: real pydantic models, before and after, compared as the PR
comment compares them. Each breaking case is a payload the old model accepted and
the new one refuses (or silently drops); each compatible case is one that must NOT
be flagged, since a false alarm on every PR would teach people to ignore the flag.
The `accepted` checks prove the verdicts against pydantic itself.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from task_contracts.compat import (
    ROOT_PATH,
    Change,
    compare_contracts,
    compare_schemas,
)


def changes(before: type[BaseModel], after: type[BaseModel]) -> list[Change]:
    return compare_schemas("t", before.model_json_schema(), after.model_json_schema())


def flagged(before: type[BaseModel], after: type[BaseModel]) -> list[tuple[str, str]]:
    """(path, what) of the breaking changes."""
    return [(c.path, c.what) for c in changes(before, after) if c.breaking]


def accepted(model: type[BaseModel], payload: dict[str, Any]) -> bool:
    try:
        model.model_validate_json(json.dumps(payload))
    except ValidationError:
        return False
    return True


def test_every_breaking_reason_names_the_queued_tasks_in_one_line() -> None:
    class Before(BaseModel):
        a: int
        b: str | None = None

    class After(BaseModel):
        a: str
        c: int

    found = changes(Before, After)
    assert found
    for change in found:
        if change.breaking:
            assert "tasks already queued (scheduled up to 30 days ahead)" in change.reason
        assert "\n" not in change.reason


# --- fields ------------------------------------------------------------------------------


def test_a_removed_field_is_breaking_its_value_is_lost() -> None:
    class Before(BaseModel):
        record_id: str
        priority: int = 0

    class After(BaseModel):
        record_id: str

    [change] = changes(Before, After)
    assert (change.path, change.what, change.breaking) == ("priority", "field removed", True)
    assert "no longer reads" in change.reason


def test_a_removed_field_under_extra_forbid_is_refused() -> None:
    class Before(BaseModel):
        model_config = ConfigDict(extra="forbid")
        record_id: str
        priority: int = 0

    class After(BaseModel):
        model_config = ConfigDict(extra="forbid")
        record_id: str

    [change] = changes(Before, After)
    assert change.breaking
    assert "refused" in change.reason
    assert not accepted(After, {"record_id": "r", "priority": 1})


def test_a_renamed_field_shows_as_removed_and_added_with_a_hint() -> None:
    class Before(BaseModel):
        record_id: str

    class After(BaseModel):
        record_key: str

    assert flagged(Before, After) == [
        ("record_id", "field removed (renamed to `record_key`?)"),
        ("record_key", "new required field (renamed from `record_id`?)"),
    ]
    assert not accepted(After, {"record_id": "r"})


def test_a_new_required_field_is_breaking() -> None:
    class Before(BaseModel):
        record_id: str

    class After(BaseModel):
        record_id: str
        tenant: str

    assert flagged(Before, After) == [("tenant", "new required field")]
    assert not accepted(After, {"record_id": "r"})


def test_an_optional_field_becoming_required_is_breaking() -> None:
    class Before(BaseModel):
        tenant: str = "default"

    class After(BaseModel):
        tenant: str

    assert flagged(Before, After) == [("tenant", "optional field became required")]


def test_a_new_optional_field_is_not_breaking() -> None:
    class Before(BaseModel):
        record_id: str

    class After(BaseModel):
        record_id: str
        tenant: str = "default"

    [change] = changes(Before, After)
    assert (change.path, change.breaking) == ("tenant", False)
    assert change.what == 'new optional field (default "default")'
    assert accepted(After, {"record_id": "r"})


def test_a_required_field_becoming_optional_is_not_breaking() -> None:
    class Before(BaseModel):
        tenant: str

    class After(BaseModel):
        tenant: str = "default"

    found = changes(Before, After)
    assert [c.what for c in found] == ["required field became optional"]
    assert not any(c.breaking for c in found)


def test_a_python_rename_that_keeps_the_wire_name_is_no_change() -> None:
    class Before(BaseModel):
        record_id: str

    class After(BaseModel):
        the_record: str = Field(alias="record_id")

    # Only the generated title differs.
    assert [c.what for c in changes(Before, After)] == ["documentation only"]


def test_a_changed_default_is_reported_but_not_breaking() -> None:
    class Before(BaseModel):
        retries: int = 3

    class After(BaseModel):
        retries: int = 5

    [change] = changes(Before, After)
    assert (change.what, change.breaking) == ("default 3 -> 5", False)


# --- types -------------------------------------------------------------------------------


def test_number_to_integer_is_a_narrowed_type() -> None:
    class Before(BaseModel):
        amount: float

    class After(BaseModel):
        amount: int

    assert flagged(Before, After) == [("amount", "type number -> integer (narrowed)")]
    assert accepted(Before, {"amount": 1.5})
    assert not accepted(After, {"amount": 1.5})


def test_integer_to_number_is_widened() -> None:
    class Before(BaseModel):
        amount: int

    class After(BaseModel):
        amount: float

    [change] = changes(Before, After)
    assert (change.what, change.breaking) == ("type integer -> number", False)


def test_an_unrelated_type_change_is_breaking() -> None:
    class Before(BaseModel):
        record_id: str

    class After(BaseModel):
        record_id: int

    assert flagged(Before, After) == [("record_id", "type string -> integer")]


def test_a_union_losing_a_member_is_breaking() -> None:
    class Before(BaseModel):
        key: int | str

    class After(BaseModel):
        key: int

    assert flagged(Before, After) == [("key", "no longer accepts string")]


def test_optional_becoming_non_nullable_is_breaking() -> None:
    class Before(BaseModel):
        nonce: str | None = None

    class After(BaseModel):
        nonce: str = ""

    assert ("nonce", "no longer accepts null") in flagged(Before, After)
    assert accepted(Before, {"nonce": None})
    assert not accepted(After, {"nonce": None})


def test_a_union_gaining_a_member_or_null_is_not_breaking() -> None:
    class Before(BaseModel):
        key: int
        nonce: str

    class After(BaseModel):
        key: int | str
        nonce: str | None

    found = changes(Before, After)
    assert {(c.path, c.what) for c in found} == {
        ("key", "now also accepts string"),
        ("nonce", "now also accepts null"),
    }
    assert not any(c.breaking for c in found)


def test_a_string_constrained_to_a_format_is_narrowed() -> None:
    class Before(BaseModel):
        at: str
        ref: str

    class After(BaseModel):
        at: datetime
        ref: UUID

    assert flagged(Before, After) == [
        ("at", "string now constrained to format 'date-time'"),
        ("ref", "string now constrained to format 'uuid'"),
    ]
    assert not accepted(After, {"at": "tomorrow", "ref": "x"})


def test_a_format_dropped_is_widened() -> None:
    class Before(BaseModel):
        at: datetime

    class After(BaseModel):
        at: str

    found = changes(Before, After)
    assert [c.breaking for c in found] == [False]


def test_a_new_or_changed_pattern_is_breaking_a_removed_one_is_not() -> None:
    class Before(BaseModel):
        a: str
        b: str = Field(pattern=r"^[a-z]+$")
        c: str = Field(pattern=r"^[a-z]+$")

    class After(BaseModel):
        a: str = Field(pattern=r"^[a-z]+$")
        b: str = Field(pattern=r"^[a-z]{1,8}$")
        c: str

    assert [p for p, _ in flagged(Before, After)] == ["a", "b"]
    assert len(changes(Before, After)) == 3


# --- enums and literals ------------------------------------------------------------------


def test_a_literal_losing_a_value_is_breaking_gaining_one_is_not() -> None:
    class Before(BaseModel):
        mode: Literal["fast", "full"]
        kind: Literal["a"]

    class After(BaseModel):
        mode: Literal["fast"]
        kind: Literal["a", "b"]

    found = changes(Before, After)
    assert [(c.path, c.what, c.breaking) for c in found] == [
        ("kind", 'value(s) "b" added', False),
        ("mode", 'value(s) "full" removed', True),
    ]


def test_an_enum_class_losing_a_member_through_ref_is_breaking() -> None:
    class Colour(Enum):
        RED = "red"
        BLUE = "blue"

    class Before(BaseModel):
        colour: Colour

    class NarrowColour(Enum):
        RED = "red"

    class After(BaseModel):
        colour: NarrowColour

    assert flagged(Before, After) == [("colour", 'value(s) "blue" removed')]


def test_a_free_string_becoming_an_enum_is_breaking() -> None:
    class Before(BaseModel):
        mode: str

    class After(BaseModel):
        mode: Literal["fast", "full"]

    assert flagged(Before, After) == [("mode", 'now limited to "fast", "full"')]


# --- bounds ------------------------------------------------------------------------------


def test_lower_maxima_and_higher_minima_are_breaking() -> None:
    class Before(BaseModel):
        name: str = Field(max_length=200)
        delay: float = Field(ge=0, le=60)
        tags: list[str] = Field(default_factory=list)
        count: int = 0

    class After(BaseModel):
        name: str = Field(max_length=100)
        delay: float = Field(ge=1, le=30)
        tags: list[str] = Field(default_factory=list, min_length=1)
        count: int = Field(default=0, multiple_of=2)

    assert flagged(Before, After) == [
        ("count", "multipleOf 2"),
        ("delay", "value minimum 0 -> 1"),
        ("delay", "value maximum 60 -> 30"),
        ("name", "length maximum 200 -> 100"),
        ("tags", "items minimum 1 added"),
    ]


def test_a_limit_added_where_there_was_none_is_breaking() -> None:
    class Before(BaseModel):
        name: str
        size: int

    class After(BaseModel):
        name: str = Field(max_length=50)
        size: int = Field(gt=0)

    assert flagged(Before, After) == [
        ("name", "length maximum 50 added"),
        ("size", "value minimum 1 added"),
    ]


def test_an_exclusive_limit_at_the_same_value_is_narrower() -> None:
    class Before(BaseModel):
        ratio: float = Field(le=1)

    class After(BaseModel):
        ratio: float = Field(lt=1)

    assert flagged(Before, After) == [("ratio", "value maximum 1 -> 1 (exclusive)")]
    assert accepted(Before, {"ratio": 1})
    assert not accepted(After, {"ratio": 1})


def test_looser_or_equivalent_limits_are_not_breaking() -> None:
    class Before(BaseModel):
        name: str = Field(max_length=100)
        delay: float = Field(ge=1, le=30)
        count: int = Field(lt=10)
        step: int = Field(multiple_of=4)

    class After(BaseModel):
        name: str = Field(max_length=200)
        delay: float = Field(ge=0)
        count: int = Field(le=9)  # the same integers as < 10
        step: int = Field(multiple_of=2)  # every multiple of 4 is one of 2

    found = changes(Before, After)
    assert found
    assert not any(c.breaking for c in found)
    assert "count" not in {c.path for c in found}


# --- nesting: $ref, arrays, maps, unions of models, recursion ----------------------------


def test_a_nested_model_change_is_found_through_ref_with_its_path() -> None:
    class InnerBefore(BaseModel):
        x: float

    class Before(BaseModel):
        inner: InnerBefore
        items: list[InnerBefore]
        by_key: dict[str, InnerBefore]

    class InnerAfter(BaseModel):
        x: int

    class After(BaseModel):
        inner: InnerAfter
        items: list[InnerAfter]
        by_key: dict[str, InnerAfter]

    assert [p for p, _ in flagged(Before, After)] == ["by_key.*.x", "inner.x", "items[].x"]


def test_renaming_a_nested_model_class_is_no_change() -> None:
    class Address(BaseModel):
        city: str

    class Before(BaseModel):
        address: Address

    class Location(BaseModel):
        city: str

    class After(BaseModel):
        address: Location

    found = changes(Before, After)
    assert [(c.what, c.breaking) for c in found] == [("documentation only", False)]


def test_list_and_map_value_types_narrowed() -> None:
    class Before(BaseModel):
        xs: list[float]
        m: dict[str, float]

    class After(BaseModel):
        xs: list[int]
        m: dict[str, int]

    assert flagged(Before, After) == [
        ("m.*", "type number -> integer (narrowed)"),
        ("xs[]", "type number -> integer (narrowed)"),
    ]


def test_a_discriminated_union_losing_a_model_is_breaking() -> None:
    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(BaseModel):
        kind: Literal["dog"]
        good: bool

    class Before(BaseModel):
        pet: Annotated[Cat | Dog, Field(discriminator="kind")]

    class After(BaseModel):
        pet: Annotated[Cat, Field(discriminator="kind")] | None = None

    found = changes(Before, After)
    assert sorted((c.path, c.what, c.breaking) for c in found) == [
        ("pet", "no longer accepts object `Dog`", True),
        ("pet", "now also accepts null", False),
        ("pet", "required field became optional", False),
    ]


def test_a_union_of_models_is_matched_model_by_model() -> None:
    class Cat(BaseModel):
        lives: int

    class Dog(BaseModel):
        name: str

    class Before(BaseModel):
        pet: Cat | Dog

    class DogAfter(BaseModel):
        name: str
        age: int = 0

    class After(BaseModel):
        pet: Cat | DogAfter

    [change] = changes(Before, After)
    assert (change.path, change.breaking) == ("pet.age", False)


def test_a_recursive_model_is_compared_once_and_terminates() -> None:
    class NodeBefore(BaseModel):
        value: float
        children: list[NodeBefore] = Field(default_factory=list)

    class NodeAfter(BaseModel):
        value: int
        children: list[NodeAfter] = Field(default_factory=list)

    assert flagged(NodeBefore, NodeAfter) == [("value", "type number -> integer (narrowed)")]


# --- extra fields ------------------------------------------------------------------------


def test_forbidding_extra_fields_is_breaking_allowing_them_is_not() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        nonce: str | None = None

    class Closed(BaseModel):
        model_config = ConfigDict(extra="forbid")
        nonce: str | None = None

    assert flagged(Open, Closed) == [("*", "extra fields now forbidden")]
    found = changes(Closed, Open)
    assert [(c.what, c.breaking) for c in found] == [("extra fields now allowed", False)]


# --- whole contracts ---------------------------------------------------------------------


def test_identical_or_reordered_models_have_no_change() -> None:
    class Before(BaseModel):
        model_config = ConfigDict(title="P")
        a: int
        b: str = "x"

    class After(BaseModel):
        model_config = ConfigDict(title="P")
        b: str = "x"
        a: int

    assert changes(Before, Before) == []
    assert changes(Before, After) == []


def test_documentation_alone_is_reported_as_such() -> None:
    class Before(BaseModel):
        """Old words."""

        a: int = Field(description="the a")

    class After(BaseModel):
        """New words."""

        a: int = Field(description="the a, better explained", title="A!")

    [change] = changes(Before, After)
    assert (change.path, change.what, change.breaking) == (ROOT_PATH, "documentation only", False)


def test_added_and_removed_task_types() -> None:
    class P(BaseModel):
        a: int

    schema = P.model_json_schema()
    diff = compare_contracts({"old": schema, "kept": schema}, {"kept": schema, "new": schema})
    assert diff.added == ["new"]
    assert diff.removed == ["old"]
    assert diff.changed == []
    assert [(c.task_type, c.breaking) for c in diff.changes] == [("new", False), ("old", True)]
    assert "no longer knows it" in diff.breaking[0].reason


def test_an_unknown_keyword_change_is_flagged_not_ignored() -> None:
    base = {"type": "object", "properties": {"a": {"type": "string"}}}
    head = {"type": "object", "properties": {"a": {"type": "string", "contentEncoding": "base64"}}}
    [change] = compare_schemas("t", base, head)
    assert change.breaking
    assert change.what.startswith("keyword contentEncoding")
    assert "not proven compatible" in change.reason


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "https://example.com/x.json"}, "only local references"),
        ({"$ref": "#/$defs/Missing", "$defs": {}}, "points at nothing"),
    ],
)
def test_a_reference_it_cannot_follow_is_a_clear_error(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compare_schemas("t", schema, {"type": "object"})
