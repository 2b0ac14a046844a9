"""How the ops commands show a task body: JSON when it is JSON, else base64.

One rule for tasks in a queue and for dead letters, so the same body reads the same
in both. This module deliberately uses the standard library only.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

BodyEncoding = Literal["json", "base64", "empty"]


def decoded_body(body: bytes) -> tuple[Any, BodyEncoding]:
    """(the parsed JSON value, "json"), or (base64 text, "base64"), or (None, "empty")."""
    if not body:
        return None, "empty"
    try:
        return json.loads(body.decode("utf-8")), "json"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return base64.b64encode(body).decode("ascii"), "base64"
