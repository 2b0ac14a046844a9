"""`enrich`: the example of a real pattern, a call to a slow backend with a timeout.

GET `{ENRICH_BACKEND_URL}/records/{record_id}` and return the record. How each
failure maps onto a retry decision is the point of the example:

| backend answer | handler raises | worker answers |
|---|---|---|
| 2xx JSON | (returns the record) | 200 |
| timeout, connection error | `TransientError(retry_after=30)` | 503 + Retry-After |
| 429 / 5xx | `TransientError`, backend's Retry-After | 503 + Retry-After |
| 404, other 4xx, non-JSON 2xx | `PermanentError` | 200 + dead letter |
| (`ENRICH_BACKEND_URL` unset) | `TransientError(status=500)` | 500 until fixed |

It deliberately does not retry inside the handler: Cloud Tasks already
retries with backoff, and a retry loop here would hold the request (and the
instance's concurrency slot) for nothing.
"""

from __future__ import annotations

import os
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict, Field

from service.context import TaskContext
from service.errors import PermanentError, TransientError
from service.task_registry import registry

BACKEND_URL_ENV: Final = "ENRICH_BACKEND_URL"
BACKEND_TIMEOUT_ENV: Final = "ENRICH_BACKEND_TIMEOUT_S"
DEFAULT_TIMEOUT_S: Final = 5.0
BACKOFF_S: Final = 30.0


class EnrichPayload(BaseModel):
    """Which record to enrich; anything else in the body is a mistake."""

    model_config = ConfigDict(extra="forbid")

    record_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")


def _timeout_s() -> float:
    raw = os.environ.get(BACKEND_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise TransientError(
            f"{BACKEND_TIMEOUT_ENV}={raw!r} is not a number of seconds in (0, 3600]; "
            "fix the service's environment",
            status=500,
        )
    return value


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    return float(raw) if raw.isdigit() else None


@registry.task("enrich", payload=EnrichPayload)
async def enrich(payload: EnrichPayload, ctx: TaskContext) -> dict[str, Any]:
    base = os.environ.get(BACKEND_URL_ENV, "").strip().rstrip("/")
    if not base:
        # A deploy mistake, fixable without touching the task: keep it for later.
        raise TransientError(
            f"{BACKEND_URL_ENV} is not set: set it to the backend's base URL", status=500
        )
    timeout = _timeout_s()
    url = f"{base}/records/{payload.record_id}"
    try:
        if ctx.http is not None:
            response = await ctx.http.get(url, timeout=timeout)
        else:
            async with httpx.AsyncClient() as http:
                response = await http.get(url, timeout=timeout)
    except httpx.TimeoutException:
        raise TransientError(
            f"backend {url} timed out after {timeout:g} s", retry_after=BACKOFF_S
        ) from None
    except httpx.TransportError as exc:
        raise TransientError(f"backend {url} unreachable: {exc}", retry_after=BACKOFF_S) from None

    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(
            f"backend {url} answered {response.status_code}",
            retry_after=_retry_after(response) or BACKOFF_S,
        )
    if response.status_code == 404:
        raise PermanentError(f"record {payload.record_id!r} does not exist at {url}")
    if response.status_code >= 400:
        raise PermanentError(f"backend {url} refused the request: {response.status_code}")
    try:
        record = response.json()
    except ValueError:
        status = response.status_code
        raise PermanentError(f"backend {url} answered {status} without JSON") from None
    return {"record_id": payload.record_id, "record": record}
