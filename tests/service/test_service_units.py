"""The worker's parts on their own: settings, errors, store, context, registry, logs.

The token check's parts (certificates, verifier) are in test_service_token_check.py;
the delivery decisions in test_service_delivery.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Final

import pytest
from hypothesis import given, strategies as st
from pydantic import BaseModel

from contract.limits import MAX_TASK_BYTES
from contract.names import GOOGLE_CERTS_URL
from service import (
    ClaimState,
    Completion,
    InMemoryIdempotencyStore,
    PermanentError,
    TaskContext,
    TaskRegistry,
    TransientError,
)
from service.config import ConfigError, Settings
from service.context import context_from_headers, parse_trace_context
from service.deadletter import MAX_LOGGED_BODY_BYTES, logged_body
from service.logs import TRACE_FIELD, CloudLoggingFormatter, configure_logging, delivery_fields


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# What the Pulumi program gives the Cloud Run container (components/worker.py).
CLOUD_RUN_ENV: Final = {
    "TASKS_AUDIENCE": "https://w.a.run.app",
    "TASKS_ALLOWED_INVOKERS": "tasks-invoker@p.iam.gserviceaccount.com",
}

LOOPBACK: Final = {"HOST": "127.0.0.1"}


class TestSettings:
    def test_defaults_are_cloud_run_ready(self) -> None:
        settings = Settings.from_env(CLOUD_RUN_ENV)
        assert (settings.host, settings.port) == ("0.0.0.0", 8080)
        assert settings.certs_url == GOOGLE_CERTS_URL
        assert settings.auth_enabled

    def test_allowed_invokers_turn_the_check_on(self) -> None:
        settings = Settings.from_env(
            {
                "TASKS_AUDIENCE": "https://w.a.run.app",
                "TASKS_ALLOWED_INVOKERS": " A@p.iam.gserviceaccount.com , b@p.example.com",
            }
        )
        assert settings.auth_enabled
        assert settings.allowed_invokers == {
            "a@p.iam.gserviceaccount.com",
            "b@p.example.com",
        }

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"TASKS_ALLOWED_INVOKERS": "a@p.iam.gserviceaccount.com"}, "TASKS_AUDIENCE is not"),
            ({"TASKS_ALLOWED_INVOKERS": "not-an-email", "TASKS_AUDIENCE": "x"}, "not an email"),
            # Fail closed: a list naming nobody, or an audience alone, never turns it off.
            ({"TASKS_ALLOWED_INVOKERS": ",", "TASKS_AUDIENCE": "x"}, "names no email"),
            ({"TASKS_ALLOWED_INVOKERS": " , "}, "names no email"),
            ({"TASKS_AUDIENCE": "https://w.a.run.app"}, "TASKS_ALLOWED_INVOKERS is not"),
            ({"PORT": "http"}, "PORT='http' is not an integer"),
            ({"PORT": "70000"}, "PORT=70000 is out of range"),
            ({**CLOUD_RUN_ENV, "TASKS_CERTS_URL": "ftp://x/certs"}, "is not an http(s) URL"),
            ({"TASKS_EXTRA_MODULES": "my-team.tasks"}, "is not a dotted module name"),
            ({"TASKS_SHUTDOWN_GRACE_S": "-1"}, "must be a finite number of seconds"),
            ({"TASKS_IDEMPOTENCY_MAX_ENTRIES": "0"}, "out of range"),
            ({"LOG_LEVEL": "LOUD"}, "use one of DEBUG"),
            ({"TASKS_DEAD_LETTER_SINK": "myteam.sinks"}, "is not 'module:attribute'"),
            ({"TASKS_IDEMPOTENCY_STORE": "a:b:c"}, "is not 'module:attribute'"),
        ],
    )
    def test_bad_values_name_the_variable_and_the_fix(
        self, env: dict[str, str], message: str
    ) -> None:
        with pytest.raises(ConfigError, match=re.escape(message)):
            Settings.from_env(env)

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            # Present but empty (an unresolved output, a template gap) never turns it off,
            # on any host, with or without an (empty) audience.
            ({"TASKS_ALLOWED_INVOKERS": ""}, "TASKS_ALLOWED_INVOKERS is set but empty"),
            ({"TASKS_ALLOWED_INVOKERS": " \t ", **LOOPBACK}, "TASKS_ALLOWED_INVOKERS is set but"),
            ({"TASKS_ALLOWED_INVOKERS": "", "TASKS_AUDIENCE": ""}, "is set but empty"),
            ({"TASKS_ALLOWED_INVOKERS": " ", "TASKS_AUDIENCE": "https://w"}, "is set but empty"),
            ({**CLOUD_RUN_ENV, "TASKS_AUDIENCE": " "}, "TASKS_AUDIENCE is set but empty"),
            ({**CLOUD_RUN_ENV, "TASKS_CERTS_URL": ""}, "TASKS_CERTS_URL is set but empty"),
            # The certs URL alone, like the audience alone, means the check was meant on.
            (
                {"TASKS_CERTS_URL": "https://issuer.example/certs", **LOOPBACK},
                "TASKS_CERTS_URL is set but TASKS_ALLOWED_INVOKERS is not",
            ),
            # No check at all: never on an address the network reaches, unless said so.
            ({}, "HOST=0.0.0.0 is not a loopback address"),
            ({"HOST": "::"}, "HOST=:: is not a loopback address"),
            ({"HOST": "10.0.0.7"}, "is not a loopback address"),
            ({"HOST": "worker.example"}, "is not a loopback address"),
            ({"TASKS_AUTH_DISABLED": "yes"}, "TASKS_AUTH_DISABLED='yes': give true or false"),
            ({"TASKS_AUTH_DISABLED": "false"}, "is not a loopback address"),
            ({**CLOUD_RUN_ENV, "TASKS_AUTH_DISABLED": "true"}, "contradicts"),
        ],
    )
    def test_the_token_check_fails_closed(self, env: dict[str, str], message: str) -> None:
        with pytest.raises(ConfigError, match=re.escape(message)):
            Settings.from_env(env)

    @pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
    def test_without_the_check_a_loopback_host_is_served(self, host: str) -> None:
        settings = Settings.from_env({"HOST": host})
        assert not settings.auth_enabled
        assert not settings.auth_disabled

    def test_the_check_is_off_on_the_network_only_when_a_setting_says_so(self) -> None:
        settings = Settings.from_env({"TASKS_AUTH_DISABLED": "TRUE"})
        assert (settings.host, settings.auth_enabled, settings.auth_disabled) == (
            "0.0.0.0",
            False,
            True,
        )

    @pytest.mark.parametrize(
        "env",
        [
            {"TASKS_ALLOWED_INVOKERS": ""},
            {"TASKS_ALLOWED_INVOKERS": "  ", "TASKS_AUDIENCE": ""},
            {"TASKS_ALLOWED_INVOKERS": "  ", "HOST": "0.0.0.0"},
        ],
    )
    def test_an_empty_allow_list_stops_the_server_with_one_line(
        self,
        env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        code, stderr = self._main(env, monkeypatch, capsys)
        assert code == 2
        [line] = [json.loads(raw) for raw in stderr.strip().splitlines()]
        assert line["severity"] == "CRITICAL"
        assert "TASKS_ALLOWED_INVOKERS is set but empty" in line["message"]

    @staticmethod
    def _main(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> tuple[int, str]:
        """`python -m service`'s main() with `env` as the whole TASKS_* environment."""
        import service.__main__ as server

        for name in [n for n in os.environ if n.startswith("TASKS_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("HOST", "127.0.0.1")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # It would replace this process's log handlers (pytest's included).
        monkeypatch.setattr(server, "configure_logging", lambda level: None)

        def serve(self: object) -> None:
            raise AssertionError("the worker started serving despite the configuration error")

        monkeypatch.setattr(server.DrainingServer, "run", serve)
        code = server.main()
        return code, capsys.readouterr().err

    def test_server_refuses_to_start_with_a_clear_message(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, stderr = self._main(
            {"TASKS_ALLOWED_INVOKERS": "a@p.iam.gserviceaccount.com"}, monkeypatch, capsys
        )
        assert code == 2
        line = json.loads(stderr)
        assert line["severity"] == "CRITICAL"
        assert (
            "configuration error: TASKS_ALLOWED_INVOKERS is set but TASKS_AUDIENCE"
            in (line["message"])
        )

    def test_unimportable_task_module_is_a_configuration_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, stderr = self._main(
            {"TASKS_EXTRA_MODULES": "no_such_team.tasks"}, monkeypatch, capsys
        )
        assert code == 2
        assert "cannot import task module 'no_such_team.tasks'" in stderr

    def test_a_task_module_that_fails_while_loading_is_one_line_naming_it(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        tmp_path: Path,
    ) -> None:
        (tmp_path / "broken_tasks.py").write_text("x = 1\nraise TypeError('wrong call')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        code, stderr = self._main({"TASKS_EXTRA_MODULES": "broken_tasks"}, monkeypatch, capsys)
        assert code == 2
        [line] = [json.loads(raw) for raw in stderr.strip().splitlines()]
        assert "task module 'broken_tasks'" in line["message"]
        assert "TypeError: wrong call" in line["message"]
        assert "broken_tasks.py, line 2" in line["message"]
        assert "Traceback" not in stderr


class TestErrors:
    def test_retry_after_rounds_up_to_whole_seconds(self) -> None:
        assert TransientError("x", retry_after=0.2).retry_after_header == "1"
        assert TransientError("x", retry_after=30).retry_after_header == "30"
        assert TransientError("x").retry_after_header is None

    @pytest.mark.parametrize("status", [200, 400, 404, 501])
    def test_transient_status_must_be_retryable(self, status: int) -> None:
        with pytest.raises(ValueError, match="not a retryable status"):
            TransientError("x", status=status)

    @pytest.mark.parametrize("retry_after", [-1.0, float("inf"), float("nan")])
    def test_retry_after_must_be_finite_and_positive(self, retry_after: float) -> None:
        with pytest.raises(ValueError, match="retry_after"):
            TransientError("x", retry_after=retry_after)

    def test_permanent_error_keeps_its_message(self) -> None:
        assert PermanentError("gone").message == "gone"


class TestIdempotencyStore:
    def test_claim_then_complete_then_duplicate(self) -> None:
        async def scenario() -> None:
            store = InMemoryIdempotencyStore()
            assert (await store.claim("q/t", lease_s=60)).state is ClaimState.CLAIMED
            assert (await store.claim("q/t", lease_s=60)).state is ClaimState.IN_PROGRESS
            await store.complete("q/t", Completion(200, "ok"))
            claim = await store.claim("q/t", lease_s=60)
            assert claim.state is ClaimState.DONE
            assert claim.completion == Completion(200, "ok")

        asyncio.run(scenario())

    def test_release_lets_the_retry_claim(self) -> None:
        async def scenario() -> None:
            store = InMemoryIdempotencyStore()
            await store.claim("k", lease_s=60)
            await store.release("k")
            assert (await store.claim("k", lease_s=60)).state is ClaimState.CLAIMED

        asyncio.run(scenario())

    def test_release_never_forgets_a_finished_task(self) -> None:
        async def scenario() -> None:
            store = InMemoryIdempotencyStore()
            await store.claim("k", lease_s=60)
            await store.complete("k", Completion(200, "ok"))
            await store.release("k")
            assert (await store.claim("k", lease_s=60)).state is ClaimState.DONE

        asyncio.run(scenario())

    def test_finished_keys_expire_after_the_ttl(self) -> None:
        async def scenario() -> None:
            clock = FakeClock()
            store = InMemoryIdempotencyStore(ttl_s=100, clock=clock)
            await store.claim("k", lease_s=60)
            await store.complete("k", Completion(200, "ok"))
            clock.now += 99
            assert (await store.claim("k", lease_s=60)).state is ClaimState.DONE
            clock.now += 2
            assert (await store.claim("k", lease_s=60)).state is ClaimState.CLAIMED

        asyncio.run(scenario())

    def test_an_abandoned_claim_lapses_after_its_lease(self) -> None:
        async def scenario() -> None:
            clock = FakeClock()
            store = InMemoryIdempotencyStore(clock=clock)
            await store.claim("k", lease_s=10)
            clock.now += 11
            assert (await store.claim("k", lease_s=10)).state is ClaimState.CLAIMED

        asyncio.run(scenario())

    def test_memory_is_bounded_oldest_first(self) -> None:
        async def scenario() -> None:
            store = InMemoryIdempotencyStore(max_entries=3)
            for key in "abcd":
                await store.claim(key, lease_s=60)
                await store.complete(key, Completion(200, "ok"))
            assert len(store) == 3
            assert (await store.claim("a", lease_s=60)).state is ClaimState.CLAIMED
            assert (await store.claim("d", lease_s=60)).state is ClaimState.DONE

        asyncio.run(scenario())

    def test_max_entries_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="max_entries=0"):
            InMemoryIdempotencyStore(max_entries=0)


class TestContext:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (
                "105445aa7843bc8bf206b12000100000/1;o=1",
                # The span id in Cloud Logging's spanId format: 16 hex digits.
                ("105445aa7843bc8bf206b12000100000", "0000000000000001", True),
            ),
            (
                "105445aa7843bc8bf206b12000100000/1;o=0",
                ("105445aa7843bc8bf206b12000100000", "0000000000000001", False),
            ),
            ("105445aa7843bc8bf206b12000100000", ("105445aa7843bc8bf206b12000100000", None, False)),
            (
                "105445AA7843BC8BF206B12000100000/7",
                ("105445aa7843bc8bf206b12000100000", "0000000000000007", False),
            ),
        ],
    )
    def test_trace_context_is_parsed(
        self, header: str, expected: tuple[str, str | None, bool]
    ) -> None:
        trace = parse_trace_context(header)
        assert trace is not None
        assert (trace.trace_id, trace.span_id, trace.sampled) == expected

    @pytest.mark.parametrize("header", ["", "xyz", "1234/1;o=1", "g" * 32, None])
    def test_bad_trace_context_is_ignored(self, header: str | None) -> None:
        assert parse_trace_context(header) is None

    def test_trace_resource_name_needs_the_project(self) -> None:
        trace = parse_trace_context("105445aa7843bc8bf206b12000100000/1")
        assert trace is not None
        assert trace.resource_name("p1") == "projects/p1/traces/105445aa7843bc8bf206b12000100000"
        assert trace.resource_name(None) == "105445aa7843bc8bf206b12000100000"

    def test_idempotency_key_is_queue_and_task(self) -> None:
        ctx = context_from_headers(
            "t", {"x-cloudtasks-taskname": "abc", "x-cloudtasks-queuename": "q"}
        )
        assert ctx.idempotency_key == "q/abc"
        assert context_from_headers("t", {}).idempotency_key is None


class TestRegistry:
    class Payload(BaseModel):
        x: int

    def test_a_type_is_declared_once(self) -> None:
        registry = TaskRegistry()

        @registry.task("resize", payload=self.Payload)
        async def resize(payload: TestRegistry.Payload, ctx: TaskContext) -> int:
            return payload.x

        registered = registry.get("resize")
        assert registered is not None
        assert registered.is_async
        assert registered.payload is self.Payload
        assert registry.names() == ["resize"]
        with pytest.raises(ValueError, match=r"already registered by .*resize"):
            registry.task("resize", payload=self.Payload)(resize)

    @pytest.mark.parametrize("name", ["", "a/b", "has space", "x" * 101])
    def test_type_names_are_path_segments(self, name: str) -> None:
        with pytest.raises(ValueError, match="is not a valid task type: 1 to 100 characters"):
            TaskRegistry().task(name, payload=self.Payload)

    @pytest.mark.parametrize("timeout_s", [0, -1, float("inf")])
    def test_timeout_must_be_positive_and_finite(self, timeout_s: float) -> None:
        with pytest.raises(ValueError, match="must be > 0 seconds"):
            TaskRegistry().task("t", payload=self.Payload, timeout_s=timeout_s)

    def test_payload_must_be_a_pydantic_model(self) -> None:
        with pytest.raises(TypeError, match="pydantic BaseModel subclass"):
            TaskRegistry().task("t", payload=dict)  # type: ignore[type-var]

    def test_builtin_types_are_registered(self) -> None:
        import service.handlers  # noqa: F401  (registers on import)
        from service import registry

        assert {"smoke", "enrich"} <= set(registry.names())


class TestLogs:
    def _format(self, record: logging.LogRecord) -> dict[str, object]:
        line = CloudLoggingFormatter().format(record)
        assert "\n" not in line
        parsed: dict[str, object] = json.loads(line)
        return parsed

    def test_one_json_line_with_severity_message_and_fields(self) -> None:
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("w",), None)
        record.fields = {"latency_ms": 1.5}
        with delivery_fields({"task_name": "t1", TRACE_FIELD: "projects/p/traces/abc"}):
            entry = self._format(record)
        assert entry["severity"] == "WARNING"
        assert entry["message"] == "hello w"
        assert entry["task_name"] == "t1"
        assert entry[TRACE_FIELD] == "projects/p/traces/abc"
        assert entry["latency_ms"] == 1.5

    def test_fields_do_not_leak_out_of_the_delivery(self) -> None:
        with delivery_fields({"task_name": "t1"}):
            pass
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "after", (), None)
        assert "task_name" not in self._format(record)

    def test_exceptions_become_a_stack_trace_field(self) -> None:
        try:
            raise RuntimeError("kaput")
        except RuntimeError:
            record = logging.LogRecord(
                "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
            )
        entry = self._format(record)
        assert entry["severity"] == "ERROR"
        assert "RuntimeError: kaput" in str(entry["stack_trace"])

    def test_configure_logging_replaces_handlers_and_silences_access_log(self) -> None:
        stream = io.StringIO()
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        try:
            configure_logging("INFO", stream)
            logging.getLogger("uvicorn.error").info("from uvicorn")
            logging.getLogger("uvicorn.access").info("GET / 200")
            logging.getLogger("httpx").info("HTTP Request: GET https://x")
            lines = [json.loads(line) for line in stream.getvalue().splitlines()]
            assert [line["message"] for line in lines] == ["from uvicorn"]
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])
            logging.getLogger("uvicorn.access").disabled = False


class TestHeaderRobustness:
    """Cloud Tasks headers are informational: no value may make a delivery fail."""

    @given(
        st.dictionaries(
            st.sampled_from(
                [
                    "x-cloudtasks-taskname",
                    "x-cloudtasks-queuename",
                    "x-cloudtasks-taskretrycount",
                    "x-cloudtasks-taskexecutioncount",
                    "x-cloudtasks-tasketa",
                    "x-cloudtasks-taskpreviousresponse",
                    "x-cloudtasks-taskretryreason",
                    "x-cloud-trace-context",
                ]
            ),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
        )
    )
    def test_any_header_values_give_a_context(self, headers: dict[str, str]) -> None:
        ctx = context_from_headers("t", headers)
        fields = ctx.log_fields()
        assert fields["task_type"] == "t"
        for name in ("retry_count", "execution_count", "previous_response"):
            assert isinstance(getattr(ctx, name), int | None)
        assert ctx.trace is None or len(ctx.trace.trace_id) == 32

    @given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
    def test_integer_headers_round_trip(self, retry: int, executions: int) -> None:
        ctx = context_from_headers(
            "t",
            {
                "x-cloudtasks-taskretrycount": str(retry),
                "x-cloudtasks-taskexecutioncount": str(executions),
            },
        )
        assert (ctx.retry_count, ctx.execution_count) == (retry, executions)

    @given(st.floats(min_value=0, max_value=10**6, allow_nan=False))
    def test_retry_after_header_is_never_shorter_than_asked(self, seconds: float) -> None:
        header = TransientError("x", retry_after=seconds).retry_after_header
        assert header is not None
        assert header.isdigit()
        assert int(header) >= seconds
        assert int(header) - 1 < seconds or int(header) == 0


class TestDeadLetterBody:
    """Every body is logged so it can be replayed, within Cloud Logging's entry size."""

    @pytest.mark.parametrize("char", ["a", "é", '"', "\x01", "漢"])
    def test_the_logged_body_fits_whatever_it_escapes_to(self, char: str) -> None:
        body = (char * (MAX_TASK_BYTES // len(char.encode()))).encode()
        text, encoding, truncated = logged_body(body)
        assert (encoding, truncated) == ("utf-8", True)
        assert len(json.dumps(text, ensure_ascii=False).encode()) - 2 <= MAX_LOGGED_BODY_BYTES
        assert body.decode().startswith(text)
        assert len(text) > MAX_LOGGED_BODY_BYTES // 7

    def test_a_small_body_is_logged_whole(self) -> None:
        assert logged_body(b'{"a": "\xc3\xa9"}') == ('{"a": "é"}', "utf-8", False)

    def test_a_body_that_is_not_utf8_is_logged_as_base64_and_round_trips(self) -> None:
        body = bytes(range(256)) * 4
        text, encoding, truncated = logged_body(body)
        assert (encoding, truncated) == ("base64", False)
        assert base64.b64decode(text) == body

    def test_a_large_binary_body_is_cut_within_the_limit(self) -> None:
        body = b"\xff" * MAX_TASK_BYTES
        text, encoding, truncated = logged_body(body)
        assert (encoding, truncated) == ("base64", True)
        assert len(text) <= MAX_LOGGED_BODY_BYTES
        assert base64.b64decode(text) == body[: len(base64.b64decode(text))]
