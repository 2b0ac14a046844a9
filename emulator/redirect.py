"""Make unchanged Python code that talks to Google's Cloud Tasks talk to the emulator.

Other people's test suites (Google's samples and system tests, firebase-admin's
integration tests) build ``tasks_v2.CloudTasksClient()`` with no arguments, or
call ``https://cloudtasks.googleapis.com/...`` with ``requests``. This module
changes only *where they connect*, as Google's libraries do for their own
emulators, and nothing they send:

* gRPC: every ``CloudTasksGrpcTransport`` (v2, v2beta2, v2beta3, sync and
  asyncio) opens a plaintext channel to the emulator instead of
  ``cloudtasks.googleapis.com:443``, and a client built without credentials
  gets ``AnonymousCredentials`` (so none need to be found on the machine);
* HTTP through ``requests`` (the clients' REST transport, firebase-admin,
  plain ``requests.post``): ``https://cloudtasks.googleapis.com`` and
  ``https://oauth2.googleapis.com`` (service-account token refreshes, answered
  by the emulator's ``POST /token``) become ``http://ADDRESS``.

The address is ``CLOUD_TASKS_EMULATOR_REDIRECT`` (else ``CLOUD_TASKS_EMULATOR_HOST``),
``HOST:PORT`` of an emulator started with ``--one-port``, which serves gRPC and
HTTP there. The separate variable exists for firebase-admin, which switches to
the Firebase emulator's request shape whenever ``CLOUD_TASKS_EMULATOR_HOST`` is
set: with only ``..._REDIRECT`` set it runs in production mode, against the
emulator's Google API.

Use it as a pytest plugin (``PYTHONPATH=REPO pytest -p emulator.redirect``) or
call :func:`install` from a ``sitecustomize``. It imports only what the caller's
own environment has (grpc, google-auth, requests, google-cloud-tasks), nothing
of the emulator's.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Final

REDIRECT_ENV: Final = "CLOUD_TASKS_EMULATOR_REDIRECT"
_FALLBACK_ENV: Final = "CLOUD_TASKS_EMULATOR_HOST"  # contract.names.EMULATOR_HOST_ENV
# Google origins whose requests go to the emulator's HTTP side instead.
REDIRECTED_ORIGINS: Final = ("https://cloudtasks.googleapis.com", "https://oauth2.googleapis.com")
_API_VERSIONS: Final = ("tasks_v2", "tasks_v2beta2", "tasks_v2beta3")

_installed: str | None = None


def target() -> str | None:
    """The emulator's ``HOST:PORT`` from the environment, or None when not set."""
    value = os.environ.get(REDIRECT_ENV) or os.environ.get(_FALLBACK_ENV)
    if not value:
        return None
    if "://" in value or "/" in value or ":" not in value:
        raise ValueError(
            f"{REDIRECT_ENV} / {_FALLBACK_ENV} must be HOST:PORT of an emulator started "
            f"with --one-port (e.g. 127.0.0.1:8123), not {value!r}"
        )
    return value


def rewrite_url(url: str, address: str) -> str:
    """``url`` with a redirected Google origin replaced by ``http://address``."""
    for origin in REDIRECTED_ORIGINS:
        if url == origin or url.startswith(origin + "/") or url.startswith(origin + ":"):
            rest = url[len(origin) :]
            if rest.startswith(":443"):
                rest = rest[4:]
            return f"http://{address}{rest}"
    return url


def _patch_grpc_transports(address: str) -> None:
    import grpc

    for version in _API_VERSIONS:
        try:
            transports = importlib.import_module(
                f"google.cloud.{version}.services.cloud_tasks.transports"
            )
            client_module = importlib.import_module(f"google.cloud.{version}")
        except ImportError:
            continue

        def sync_channel(*_args: Any, **_kwargs: Any) -> Any:
            return grpc.insecure_channel(address)

        def aio_channel(*_args: Any, **_kwargs: Any) -> Any:
            return grpc.aio.insecure_channel(address)

        transports.CloudTasksGrpcTransport.create_channel = staticmethod(sync_channel)
        transports.CloudTasksGrpcAsyncIOTransport.create_channel = staticmethod(aio_channel)
        for name in ("CloudTasksClient", "CloudTasksAsyncClient"):
            _default_anonymous_credentials(getattr(client_module, name))


def _default_anonymous_credentials(client_class: Any) -> None:
    """Clients built without credentials get anonymous ones instead of searching for ADC."""
    from google.auth.credentials import AnonymousCredentials

    original = client_class.__init__
    if getattr(original, "_emulator_redirect", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        options = kwargs.get("client_options")
        has_file = bool(getattr(options, "credentials_file", None)) or (
            isinstance(options, dict) and bool(options.get("credentials_file"))
        )
        transport = kwargs.get("transport")
        if (
            not args
            and kwargs.get("credentials") is None
            and not has_file
            and (transport is None or isinstance(transport, str))
        ):
            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
        original(self, *args, **kwargs)

    __init__._emulator_redirect = True  # type: ignore[attr-defined]
    client_class.__init__ = __init__


def _patch_requests(address: str) -> None:
    try:
        from requests import adapters
    except ImportError:
        return
    original = adapters.HTTPAdapter.send
    if getattr(original, "_emulator_redirect", False):
        return

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        request.url = rewrite_url(request.url, address)
        return original(self, request, *args, **kwargs)

    send._emulator_redirect = True  # type: ignore[attr-defined]
    adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


NOT_SET: Final = (
    f"neither {REDIRECT_ENV} nor {_FALLBACK_ENV} is set: set one to the HOST:PORT of an "
    "emulator started with --one-port (e.g. 127.0.0.1:8123); without it the clients would "
    "reach Google with your own credentials, so nothing runs"
)


def install(address: str | None = None) -> str:
    """Redirect to ``address`` (default: from the environment); the address used.

    Fails closed: ``ValueError`` when no address is given or set, rather than letting a
    suite meant for the emulator run against Google with the developer's credentials."""
    global _installed
    if _installed is not None:
        return _installed
    address = address or target()
    if address is None:
        raise ValueError(NOT_SET)
    _patch_grpc_transports(address)
    _patch_requests(address)
    _installed = address
    return address


def pytest_configure(config: Any) -> None:
    """pytest plugin hook: install before the suite's modules build their clients; a
    missing or malformed address stops the run with one line (pytest's usage error)."""
    import pytest

    try:
        config.stash_emulator_redirect = install()  # shown in the report header
    except ValueError as exc:
        raise pytest.UsageError(f"-p emulator.redirect: {exc}") from None


def pytest_report_header(config: Any) -> str | None:
    address = getattr(config, "stash_emulator_redirect", None)
    return None if address is None else f"Cloud Tasks redirected to the emulator at {address}"
