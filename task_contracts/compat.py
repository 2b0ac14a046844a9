"""Would tasks already queued still be accepted? Two sets of task contracts compared.

A task is validated when it is delivered, not when it is created: a task
enqueued against the base branch's payload model may wait in its queue (it can
be scheduled up to 30 days ahead, then retried) and reach the worker built from
the head. So a change is *breaking* when some payload the base accepted is
refused by the head (the worker dead-letters it), or is accepted but silently
loses data (a removed field). Everything the head merely accepts in addition is
compatible.

The comparison walks the JSON Schemas pydantic emits (`model_json_schema()`,
draft 2020-12): `$ref` into `$defs` (recursive models included), `anyOf` /
`oneOf` unions (pydantic's `X | None` is one), `type`, `enum`/`const`, numeric
and length bounds, `pattern`, `format`, arrays, objects (`properties`,
`required`, `additionalProperties`, i.e. `extra="forbid"`). Titles,
descriptions and examples are documentation and never a change. A keyword it
does not model is reported as breaking ("not proven compatible"): a false alarm
costs a look, a missed break costs queued tasks.

Deliberately pure and standard-library only (plus `contract`): it reads two
mappings of task type -> schema and returns `Change`s; reading files and
rendering are `task_contracts.report`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from contract.limits import MAX_SCHEDULE_AHEAD_S

Schema = Mapping[str, Any]

QUEUED: Final = f"tasks already queued (scheduled up to {MAX_SCHEDULE_AHEAD_S // 86400} days ahead)"
"""How every breaking reason starts: who is hurt."""
REFUSED: Final = "would be refused by the new worker and dead-lettered"
ROOT_PATH: Final = "(payload)"

# Documentation only: a change here changes no accepted payload.
DOC_KEYS: Final = frozenset(
    {"title", "description", "examples", "$comment", "$schema", "$id", "deprecated"}
)
# `discriminator` only tells validators which union member to try first.
IGNORED_KEYS: Final = DOC_KEYS | {"discriminator", "readOnly", "writeOnly"}
HANDLED_KEYS: Final = frozenset(
    {
        "$ref",
        "$defs",
        "definitions",
        "allOf",
        "anyOf",
        "oneOf",
        "type",
        "enum",
        "const",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
        "maxProperties",
    }
)
KINDS: Final = ("null", "boolean", "integer", "number", "string", "array", "object")


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the base and the head contract of a task type."""

    task_type: str
    path: str
    """Where in the payload: `(payload)`, `field`, `field.sub`, `items[]`, `tags.*`."""
    what: str
    """Short description: `new required field`, `type number -> integer`."""
    breaking: bool
    reason: str
    """One line: for a breaking change, what happens to tasks already queued."""


@dataclass(frozen=True)
class ContractDiff:
    """Every change between two sets of task contracts (task type -> schema)."""

    base_types: tuple[str, ...]
    head_types: tuple[str, ...]
    changes: tuple[Change, ...] = field(default=())

    @property
    def added(self) -> list[str]:
        return sorted(set(self.head_types) - set(self.base_types))

    @property
    def removed(self) -> list[str]:
        return sorted(set(self.base_types) - set(self.head_types))

    @property
    def changed(self) -> list[str]:
        """Task types present on both sides whose contract changed."""
        both = set(self.base_types) & set(self.head_types)
        return sorted({c.task_type for c in self.changes if c.task_type in both})

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    def of(self, task_type: str) -> list[Change]:
        return [c for c in self.changes if c.task_type == task_type]


def compare_contracts(base: Mapping[str, Schema], head: Mapping[str, Schema]) -> ContractDiff:
    """Compare every task type's contract; a removed type is breaking, a new one is not."""
    changes: list[Change] = []
    for task_type in sorted(set(base) | set(head)):
        if task_type not in head:
            changes.append(
                Change(
                    task_type,
                    ROOT_PATH,
                    "task type removed",
                    True,
                    f"{QUEUED} of type {task_type!r} would reach a worker that no longer "
                    "knows it and be dead-lettered; remove it only once its queues are empty",
                )
            )
        elif task_type not in base:
            changes.append(
                Change(task_type, ROOT_PATH, "new task type", False, "nothing queued can have it")
            )
        else:
            changes.extend(compare_schemas(task_type, base[task_type], head[task_type]))
    return ContractDiff(tuple(sorted(base)), tuple(sorted(head)), tuple(changes))


def compare_schemas(task_type: str, base: Schema, head: Schema) -> list[Change]:
    """The changes from one task type's base contract to its head contract."""
    found = _Comparison(task_type, base, head).run()
    if not found and _exact(base) != _exact(head):
        return [
            Change(
                task_type,
                ROOT_PATH,
                "documentation only",
                False,
                "titles, descriptions or examples changed; every payload is validated as before",
            )
        ]
    return found


# --- the walk --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    """A schema with its `$ref`s resolved; `ref` is the definition it came from."""

    schema: Schema
    ref: str | None = None


class _Comparison:
    def __init__(self, task_type: str, base_root: Schema, head_root: Schema) -> None:
        self.task_type = task_type
        self.base_root = base_root
        self.head_root = head_root
        # (base ref, head ref) pairs being compared: a recursive model is compared once.
        self._visiting: set[tuple[str, str]] = set()

    def run(self) -> list[Change]:
        return self._compare(
            _resolve(self.base_root, self.base_root), _resolve(self.head_root, self.head_root), ""
        )

    def _change(self, path: str, what: str, breaking: bool, reason: str) -> Change:
        return Change(self.task_type, path or ROOT_PATH, what, breaking, reason)

    # One schema against another: unions first, then the matched members.
    def _compare(self, base: _Node, head: _Node, path: str) -> list[Change]:
        pair = (base.ref, head.ref)
        if pair[0] is not None and pair[1] is not None:
            key = (pair[0], pair[1])
            if key in self._visiting:
                return []
            self._visiting.add(key)
            try:
                return self._compare_union(base, head, path)
            finally:
                self._visiting.discard(key)
        return self._compare_union(base, head, path)

    def _compare_union(self, base: _Node, head: _Node, path: str) -> list[Change]:
        base_members = list(_members(base, self.base_root))
        head_members = list(_members(head, self.head_root))
        changes: list[Change] = []
        used: set[int] = set()
        single = len(base_members) == 1 and len(head_members) == 1
        # A model kept under its own name is matched to itself first, so in `Cat | Dog`
        # -> `Cat` the lost `Dog` is not compared with `Cat` for want of another object.
        same_ref = _same_ref_pairs(base_members, head_members)
        for b_index, member in enumerate(base_members):
            kind = _kind(member.schema)
            if b_index in same_ref:
                candidates = [(same_ref[b_index], head_members[same_ref[b_index]])]
            else:
                candidates = [
                    (i, h)
                    for i, h in enumerate(head_members)
                    if _accepts_kind(_kind(h.schema), kind) and i not in same_ref.values()
                ]
            if not candidates and kind == "number":
                # number -> integer: narrowed, yet the member's own limits still matter.
                candidates = [
                    (i, h) for i, h in enumerate(head_members) if _kind(h.schema) == "integer"
                ]
                if candidates:
                    changes.append(
                        self._change(
                            path,
                            "type number -> integer (narrowed)",
                            True,
                            f"{QUEUED} with a fractional number here (1.5) {REFUSED}",
                        )
                    )
            if not candidates:
                if single:
                    new = _describe(head_members[0])
                    what = f"type {_describe(member)} -> {new}"
                else:
                    what = f"no longer accepts {_describe(member)}"
                changes.append(
                    self._change(
                        path, what, True, f"{QUEUED} with a {_describe(member)} here {REFUSED}"
                    )
                )
                continue
            index, found = self._best(member, candidates, path)
            used.add(index)
            changes.extend(found)
        if len(head_members) > 1 or len(base_members) > 1:
            for i, member in enumerate(head_members):
                if i not in used and not any(
                    _accepts_kind(_kind(b.schema), _kind(member.schema)) for b in base_members
                ):
                    changes.append(
                        self._change(
                            path,
                            f"now also accepts {_describe(member)}",
                            False,
                            "widened: everything accepted before still is",
                        )
                    )
        changes.extend(self._compare_default(base.schema, head.schema, path))
        return changes

    def _best(
        self, member: _Node, candidates: list[tuple[int, _Node]], path: str
    ) -> tuple[int, list[Change]]:
        """The head member that accepts `member` best: the same definition, else the
        fewest breaking changes (a union of several models is matched model by model)."""
        same = [(i, h) for i, h in candidates if member.ref and h.ref == member.ref]
        if len(same) == 1 or len(candidates) == 1:
            i, h = (same or candidates)[0]
            return i, self._compare_member(member, h, path)
        tried = [(i, self._compare_member(member, h, path)) for i, h in candidates]
        return min(tried, key=lambda t: (sum(c.breaking for c in t[1]), len(t[1])))

    def _compare_member(self, base: _Node, head: _Node, path: str) -> list[Change]:
        b, h = base.schema, head.schema
        b_kind, h_kind = _kind(b), _kind(h)
        changes: list[Change] = []
        if b_kind != h_kind and not (b_kind == "number" and h_kind == "integer"):
            changes.append(
                self._change(
                    path,
                    f"type {b_kind} -> {h_kind}",
                    False,
                    "widened: everything accepted before still is",
                )
            )
        changes += self._compare_values(b, h, path)
        changes += self._compare_bounds(b, h, path, integer=b_kind == h_kind == "integer")
        changes += self._compare_strings(b, h, path)
        if h_kind in ("array", "any") and b_kind == "array":
            changes += self._compare_arrays(b, h, path)
        if h_kind in ("object", "any") and b_kind == "object":
            changes += self._compare_objects(b, h, path)
        changes += self._compare_unknown(b, h, path)
        return changes

    # --- enum / const ------------------------------------------------------------------

    def _compare_values(self, b: Schema, h: Schema, path: str) -> list[Change]:
        b_values, h_values = _allowed_values(b), _allowed_values(h)
        if h_values is None:
            if b_values is None:
                return []
            return [
                self._change(
                    path,
                    "no longer limited to fixed values",
                    False,
                    "widened: any value of the type",
                )
            ]
        if b_values is None:
            listed = ", ".join(sorted(h_values))
            return [
                self._change(
                    path,
                    f"now limited to {listed}",
                    True,
                    f"{QUEUED} with any other value here {REFUSED}",
                )
            ]
        changes = []
        if lost := b_values - h_values:
            listed = ", ".join(sorted(lost))
            changes.append(
                self._change(
                    path, f"value(s) {listed} removed", True, f"{QUEUED} with {listed} {REFUSED}"
                )
            )
        if gained := h_values - b_values:
            listed = ", ".join(sorted(gained))
            changes.append(
                self._change(path, f"value(s) {listed} added", False, "widened: new values only")
            )
        return changes

    # --- numbers, lengths, counts ------------------------------------------------------

    def _compare_bounds(self, b: Schema, h: Schema, path: str, *, integer: bool) -> list[Change]:
        changes = []
        for label, lower, upper in _BOUNDS:
            for side, read, is_upper in (("minimum", lower, False), ("maximum", upper, True)):
                before, after = read(b, integer), read(h, integer)
                verdict = _bound_change(before, after, upper=is_upper)
                if verdict is None:
                    continue
                narrowed, text = verdict
                what = f"{label} {side} {text}"
                if narrowed:
                    changes.append(
                        self._change(path, what, True, f"{QUEUED} outside the new {side} {REFUSED}")
                    )
                else:
                    changes.append(self._change(path, what, False, "widened: a looser limit"))
        changes += self._compare_multiple_of(b, h, path)
        if not b.get("uniqueItems") and h.get("uniqueItems"):
            changes.append(
                self._change(
                    path, "items must now be unique", True, f"{QUEUED} with duplicates {REFUSED}"
                )
            )
        elif b.get("uniqueItems") and not h.get("uniqueItems"):
            changes.append(self._change(path, "items no longer need be unique", False, "widened"))
        return changes

    def _compare_multiple_of(self, b: Schema, h: Schema, path: str) -> list[Change]:
        before, after = b.get("multipleOf"), h.get("multipleOf")
        if before == after:
            return []
        if after is None:
            return [self._change(path, f"multipleOf {before} removed", False, "widened")]
        # Every multiple of `before` is a multiple of `after` when after divides before.
        if before is not None and _divides(after, before):
            return [self._change(path, f"multipleOf {before} -> {after}", False, "widened")]
        return [
            self._change(
                path,
                f"multipleOf {before} -> {after}" if before is not None else f"multipleOf {after}",
                True,
                f"{QUEUED} with a value that is not a multiple of {after} {REFUSED}",
            )
        ]

    # --- strings ---------------------------------------------------------------------

    def _compare_strings(self, b: Schema, h: Schema, path: str) -> list[Change]:
        changes = []
        for key, noun in (("pattern", "pattern"), ("format", "format")):
            before, after = b.get(key), h.get(key)
            if before == after:
                continue
            if after is None:
                changes.append(self._change(path, f"{noun} {before!r} removed", False, "widened"))
            elif before is None:
                changes.append(
                    self._change(
                        path,
                        f"string now constrained to {noun} {after!r}",
                        True,
                        f"{QUEUED} with a value that does not match it {REFUSED}",
                    )
                )
            else:
                changes.append(
                    self._change(
                        path,
                        f"{noun} {before!r} -> {after!r}",
                        True,
                        f"{QUEUED} may hold values the old {noun} allowed and the new one "
                        f"does not ({REFUSED}); not proven compatible, check by hand",
                    )
                )
        return changes

    # --- arrays ----------------------------------------------------------------------

    def _compare_arrays(self, b: Schema, h: Schema, path: str) -> list[Change]:
        changes: list[Change] = []
        b_prefix, h_prefix = b.get("prefixItems") or [], h.get("prefixItems") or []
        for i in range(max(len(b_prefix), len(h_prefix))):
            b_item = b_prefix[i] if i < len(b_prefix) else b.get("items", {})
            h_item = h_prefix[i] if i < len(h_prefix) else h.get("items", {})
            changes += self._sub(b_item, h_item, f"{path}[{i}]")
        b_items, h_items = b.get("items", {}), h.get("items", {})
        if isinstance(b_items, Mapping) and isinstance(h_items, Mapping):
            changes += self._sub(b_items, h_items, f"{path}[]")
        return changes

    # --- objects ---------------------------------------------------------------------

    def _compare_objects(self, b: Schema, h: Schema, path: str) -> list[Change]:
        changes: list[Change] = []
        b_props: Mapping[str, Schema] = b.get("properties") or {}
        h_props: Mapping[str, Schema] = h.get("properties") or {}
        b_required, h_required = set(b.get("required") or ()), set(h.get("required") or ())
        b_extra, h_extra = b.get("additionalProperties", True), h.get("additionalProperties", True)
        removed = sorted(set(b_props) - set(h_props))
        added = sorted(set(h_props) - set(b_props))
        renamed = self._rename(b_props, h_props, removed, added)

        for name in removed:
            hint = f" (renamed to `{renamed[1]}`?)" if renamed and renamed[0] == name else ""
            if h_extra is False:
                consequence = f"that carry `{name}` {REFUSED} (extra fields are forbidden)"
            else:
                consequence = (
                    f"still carry `{name}`, which the new worker no longer reads: its value is lost"
                )
            changes.append(
                self._change(
                    _join(path, name), f"field removed{hint}", True, f"{QUEUED} {consequence}"
                )
            )
        for name in added:
            hint = f" (renamed from `{renamed[0]}`?)" if renamed and renamed[1] == name else ""
            where = _join(path, name)
            if name in h_required:
                changes.append(
                    self._change(
                        where,
                        f"new required field{hint}",
                        True,
                        f"{QUEUED} lack `{name}` and {REFUSED}; add it with a default instead",
                    )
                )
            else:
                default = h_props[name].get("default")
                shown = f" (default {json.dumps(default)})" if "default" in h_props[name] else ""
                changes.append(
                    self._change(
                        where,
                        f"new optional field{shown}{hint}",
                        False,
                        "tasks that lack it get the default",
                    )
                )
            if b_extra is not True and b_extra is not False and name not in h_required:
                # Before, `name` was an extra field checked against additionalProperties.
                changes += self._sub(b_extra, h_props[name], where)
        for name in sorted(set(b_props) & set(h_props)):
            where = _join(path, name)
            if name in h_required and name not in b_required:
                changes.append(
                    self._change(
                        where,
                        "optional field became required",
                        True,
                        f"{QUEUED} that omit `{name}` {REFUSED}",
                    )
                )
            elif name in b_required and name not in h_required:
                changes.append(
                    self._change(where, "required field became optional", False, "widened")
                )
            changes += self._sub(b_props[name], h_props[name], where)
        for name in sorted(h_required - set(h_props) - b_required):
            changes.append(
                self._change(
                    _join(path, name),
                    "new required key",
                    True,
                    f"{QUEUED} lack `{name}` and {REFUSED}",
                )
            )
        changes += self._compare_extra(b_extra, h_extra, path)
        return changes

    def _compare_extra(self, b_extra: Any, h_extra: Any, path: str) -> list[Change]:
        if b_extra == h_extra or (b_extra in (True, {}) and h_extra in (True, {})):
            return []
        where = _join(path, "*")
        if h_extra is False:
            return [
                self._change(
                    where,
                    "extra fields now forbidden",
                    True,
                    f"{QUEUED} that carry any field the model does not declare {REFUSED}",
                )
            ]
        if b_extra is False:
            return [self._change(where, "extra fields now allowed", False, "widened")]
        return self._sub(_as_schema(b_extra), _as_schema(h_extra), where)

    def _rename(
        self,
        b_props: Mapping[str, Schema],
        h_props: Mapping[str, Schema],
        removed: list[str],
        added: list[str],
    ) -> tuple[str, str] | None:
        """One field removed and one added with the same schema: most likely a rename."""
        if len(removed) == 1 and len(added) == 1:
            old, new = removed[0], added[0]
            if _canonical(_strip_docs(b_props[old])) == _canonical(_strip_docs(h_props[new])):
                return old, new
        return None

    # --- defaults and the rest -------------------------------------------------------

    def _compare_default(self, b: Schema, h: Schema, path: str) -> list[Change]:
        if "default" not in b or "default" not in h or b["default"] == h["default"]:
            return []
        before, after = json.dumps(b["default"]), json.dumps(h["default"])
        return [
            self._change(
                path,
                f"default {before} -> {after}",
                False,
                f"{QUEUED} that omit it are accepted, with {after} instead of {before}",
            )
        ]

    def _compare_unknown(self, b: Schema, h: Schema, path: str) -> list[Change]:
        changes = []
        for key in sorted((set(b) | set(h)) - HANDLED_KEYS - IGNORED_KEYS):
            if _canonical(b.get(key)) != _canonical(h.get(key)):
                changes.append(
                    self._change(
                        path,
                        f"keyword {key} {_short(b.get(key))} -> {_short(h.get(key))}",
                        True,
                        f"not proven compatible: check by hand that {QUEUED} stay valid",
                    )
                )
        return changes

    def _sub(self, b: Any, h: Any, path: str) -> list[Change]:
        return self._compare(
            _resolve(_as_schema(b), self.base_root), _resolve(_as_schema(h), self.head_root), path
        )


# --- schema helpers (pure) -------------------------------------------------------------


def _as_schema(value: Any) -> Schema:
    """JSON Schema's boolean schemas: true accepts anything, false nothing."""
    if value is True or value is None:
        return {}
    if value is False:
        return {"not": {}}
    if not isinstance(value, Mapping):
        raise ValueError(f"not a JSON Schema: {_short(value)}")
    return value


def _lookup(ref: str, root: Schema) -> Schema:
    if not ref.startswith("#/"):
        raise ValueError(f"$ref {ref!r}: only local references (#/$defs/...) are supported")
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or part not in target:
            raise ValueError(f"$ref {ref!r} points at nothing in the schema")
        target = target[part]
    return _as_schema(target)


def _resolve(schema: Schema, root: Schema) -> _Node:
    """Follow `$ref` (keeping its siblings, like pydantic's `default`) and fold a
    one-member `allOf`, which older pydantic versions emitted around a `$ref`."""
    ref = None
    seen: set[str] = set()
    while True:
        if "$ref" in schema:
            ref = str(schema["$ref"])
            if ref in seen:
                raise ValueError(f"$ref {ref!r} refers to itself")
            seen.add(ref)
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**_lookup(ref, root), **siblings}
        elif isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            siblings = {k: v for k, v in schema.items() if k != "allOf"}
            schema = {**_as_schema(schema["allOf"][0]), **siblings}
        else:
            return _Node(schema, ref)


def _members(node: _Node, root: Schema) -> Iterator[_Node]:
    """The alternatives of a union (`anyOf`, `oneOf`, `type: [..]`), flattened."""
    schema = node.schema
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            for option in schema[key]:
                yield from _members(_resolve(_as_schema(option), root), root)
            return
    if isinstance(schema.get("type"), list):
        for kind in schema["type"]:
            yield _Node({**schema, "type": kind}, node.ref)
        return
    yield node


def _same_ref_pairs(base: list[_Node], head: list[_Node]) -> dict[int, int]:
    """Base member index -> head member index, for members from the same definition."""
    head_by_ref = {h.ref: i for i, h in enumerate(head) if h.ref}
    return {i: head_by_ref[b.ref] for i, b in enumerate(base) if b.ref in head_by_ref}


def _kind(schema: Schema) -> str:
    """`null`..`object`, or `any` when nothing restricts the type."""
    if schema.get("not") == {}:
        return "nothing"
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    values = _raw_values(schema)
    if values:
        kinds = {_json_kind(v) for v in values}
        if len(kinds) == 1:
            return kinds.pop()
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "any"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _accepts_kind(head: str, base: str) -> bool:
    """Does a head member of kind `head` accept values of the base member's kind?"""
    return head == base or head == "any" or (head == "number" and base == "integer")


def _describe(node: _Node) -> str:
    kind = _kind(node.schema)
    name = node.ref.rsplit("/", 1)[-1] if node.ref else None
    return f"{kind} `{name}`" if name and kind == "object" else kind


def _raw_values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    return None


def _allowed_values(schema: Schema) -> set[str] | None:
    values = _raw_values(schema)
    return None if values is None else {json.dumps(v, sort_keys=True) for v in values}


Bound = tuple[float, bool]
"""(limit, exclusive)."""


def _read_bound(inclusive: str, exclusive: str | None) -> Callable[[Schema, bool], Bound | None]:
    def read(schema: Schema, integer: bool) -> Bound | None:
        bounds: list[Bound] = []
        if isinstance(schema.get(inclusive), int | float):
            bounds.append((schema[inclusive], False))
        if exclusive and isinstance(schema.get(exclusive), int | float):
            limit = schema[exclusive]
            if integer and float(limit).is_integer():
                # For integers `< 10` is `<= 9`: the same set, not a change.
                step = -1 if inclusive in ("maximum",) else 1
                bounds.append((limit + step, False))
            else:
                bounds.append((limit, True))
        if not bounds:
            return None
        is_upper = inclusive.startswith("max")
        # Both present: the tighter one applies.
        return (min if is_upper else max)(bounds, key=lambda b: (b[0], -b[1] if is_upper else b[1]))

    return read


_BOUNDS: Final = (
    (
        "value",
        _read_bound("minimum", "exclusiveMinimum"),
        _read_bound("maximum", "exclusiveMaximum"),
    ),
    ("length", _read_bound("minLength", None), _read_bound("maxLength", None)),
    ("items", _read_bound("minItems", None), _read_bound("maxItems", None)),
    ("fields", _read_bound("minProperties", None), _read_bound("maxProperties", None)),
)


def _bound_change(
    before: Bound | None, after: Bound | None, *, upper: bool
) -> tuple[bool, str] | None:
    """(narrowed?, text) for a lower or upper limit, or None when unchanged."""
    if before == after:
        return None
    if after is None:
        return False, f"{_show(before)} removed"
    if before is None:
        return True, f"{_show(after)} added"
    # Compare (limit, exclusive): an exclusive limit is tighter than the same inclusive one.
    if upper:
        narrowed = after[0] < before[0] or (after[0] == before[0] and after[1] and not before[1])
    else:
        narrowed = after[0] > before[0] or (after[0] == before[0] and after[1] and not before[1])
    return narrowed, f"{_show(before)} -> {_show(after)}"


def _show(bound: Bound | None) -> str:
    assert bound is not None
    limit, exclusive = bound
    text = f"{limit:g}" if isinstance(limit, float) else str(limit)
    return f"{text} (exclusive)" if exclusive else text


def _divides(divisor: float, value: float) -> bool:
    quotient = value / divisor
    return abs(quotient - round(quotient)) < 1e-9


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _strip_docs(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_docs(v) for k, v in value.items() if k not in DOC_KEYS}
    if isinstance(value, list):
        return [_strip_docs(v) for v in value]
    return value


def _exact(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _canonical(value: Any) -> str:
    return json.dumps(_strip_docs(value), sort_keys=True)


def _short(value: Any) -> str:
    text = "absent" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
