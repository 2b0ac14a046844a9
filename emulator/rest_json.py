"""Checks the proto3 JSON parser skips: out-of-range enum numbers and invalid base64.

``google.protobuf.json_format`` accepts any integer for an open (proto3) enum
and silently wraps values beyond int32, and decodes ``bytes`` fields with a
lenient base64 decoder that drops characters it does not know, so
``"!!!"`` would be stored as an empty body. Google's REST front end answers
400 for both. :func:`check_json_document` walks a request body next to its
message descriptor before it is parsed, and :func:`check_query_enum` checks
an enum given as a query parameter.

The proto3 JSON mapping (https://protobuf.dev/programming-guides/json/):
enums are names or integers; bytes are "standard or URL-safe base64 encoding
with/without paddings".
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from emulator.errors import invalid

_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def _enum_problem(fd: FieldDescriptor, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None  # names are checked by json_format itself
    # Not values_by_number.get(value): the upb map truncates the key to int32 too.
    if value not in {v.number for v in fd.enum_type.values}:
        known = ", ".join(f"{v.name} ({v.number})" for v in fd.enum_type.values)
        return f"Invalid value {value} for enum field {fd.json_name}: use one of {known}"
    return None


def check_query_enum(fd: FieldDescriptor, value: Any) -> None:
    problem = _enum_problem(fd, value)
    if problem is not None:
        raise invalid(problem)


def _check_bytes(fd: FieldDescriptor, value: Any) -> None:
    if not isinstance(value, str):
        return  # json_format refuses a non-string itself
    text = value.strip()
    padded = text + "=" * (-len(text.rstrip("=")) % 4) if "=" not in text else text
    try:
        if not _BASE64_RE.fullmatch(text) or len(padded) % 4 == 1:
            raise binascii.Error("not base64")
        base64.b64decode(padded.translate(str.maketrans("-_", "+/")), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(
            f"Invalid value for bytes field {fd.json_name}: {value[:60]!r} is not base64 "
            "(standard or URL-safe alphabet)"
        ) from None


def _check_value(fd: FieldDescriptor, value: Any) -> None:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        problem = _enum_problem(fd, value)
        if problem is not None:
            raise invalid(problem)
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        _check_bytes(fd, value)
    elif fd.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, dict):
        check_json_document(value, fd.message_type)


def check_json_document(document: Any, descriptor: Descriptor) -> None:
    """Raise INVALID_ARGUMENT for an enum number the enum does not define or
    bytes that are not base64, anywhere in ``document`` (a JSON object for
    ``descriptor``). Anything else is left to json_format."""
    if not isinstance(document, dict) or descriptor.full_name.startswith("google.protobuf."):
        return  # well-known types have their own JSON forms
    for key, value in document.items():
        fd = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if fd is None or value is None:
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            if isinstance(value, dict):
                for item in value.values():
                    _check_value(value_fd, item)
        elif isinstance(value, list):  # a repeated field (json_format refuses others)
            for item in value:
                _check_value(fd, item)
        else:
            _check_value(fd, value)
