"""The token check, against the app over HTTP (in-process) with really signed tokens."""

from __future__ import annotations

import base64
import json

import pytest

from emulator.oidc import OidcIssuer
from tests.service.conftest import Worker, new_id
from tests.service.support import DEFAULT_AUDIENCE, DEFAULT_INVOKER

# In-process (no worker process): not marked integration, so `make test-fast` runs it.


def _assert_rejected(worker: Worker, response_status: int, status: int, task_id: str) -> None:
    assert response_status == status
    assert worker.runs(task_id) == [], "the handler ran for a rejected request"


class TestAccepted:
    def test_valid_token_runs_the_handler_and_names_the_invoker(self, worker: Worker) -> None:
        task_id = new_id()
        response = worker.post("record", {"id": task_id})
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "result": {"id": task_id}}
        [run] = worker.runs(task_id)
        assert run["invoker_email"] == DEFAULT_INVOKER

    def test_invoker_email_matches_case_insensitively(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(email=DEFAULT_INVOKER.upper())
        task_id = new_id()
        assert worker.post("record", {"id": task_id}, token=token).status_code == 200
        assert len(worker.runs(task_id)) == 1

    def test_bare_google_issuer_form_is_accepted(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(issuer="accounts.google.com")
        assert worker.post("record", {"id": new_id()}, token=token).status_code == 200

    def test_local_issuer_origin_is_accepted_as_iss(self, worker: Worker) -> None:
        # The local stack's emulator may name itself by its own URL.
        assert worker.issuer is not None
        token = worker.issuer.token(issuer=worker.issuer.origin)
        assert worker.post("record", {"id": new_id()}, token=token).status_code == 200

    def test_health_needs_no_token(self, worker: Worker) -> None:
        response = worker.request("GET", "/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestRejected:
    """Each rejection: right status, no reason in the body, reason in the log, no run."""

    def test_no_token_is_401_with_bearer_challenge(self, worker: Worker) -> None:
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token="")
        _assert_rejected(worker, response.status_code, 401, task_id)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"status": "unauthenticated"}

    def test_bad_signature_is_401(self, worker: Worker) -> None:
        assert worker.issuer is not None
        # Same key id as the published key, different private key: a forgery.
        forger = OidcIssuer(kid=worker.issuer.keys[0].kid)
        token = worker.issuer.token(key=forger)
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_tampered_claims_are_401(self, worker: Worker) -> None:
        assert worker.issuer is not None
        header, payload, signature = worker.issuer.token(email="other@example.com").split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["email"] = DEFAULT_INVOKER
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=f"{header}.{forged}.{signature}")
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_expired_token_is_401(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(issued_ago=7200, expires_in=3600)
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_token_expired_seconds_ago_is_401(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(issued_ago=62, expires_in=60)
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_wrong_audience_is_401(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(audience=DEFAULT_AUDIENCE + "/tasks/record")
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_wrong_issuer_is_401(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(issuer="https://evil.example.com")
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_unknown_key_id_is_401(self, worker: Worker) -> None:
        stranger = OidcIssuer()
        assert worker.issuer is not None
        token = worker.issuer.token(key=stranger)
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 401, task_id)

    @pytest.mark.parametrize(
        "authorization",
        ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "token abc"],
    )
    def test_malformed_authorization_is_401(self, worker: Worker, authorization: str) -> None:
        task_id = new_id()
        response = worker.post(
            "record", {"id": task_id}, token="", headers={"Authorization": authorization}
        )
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_unsigned_alg_none_token_is_401(self, worker: Worker) -> None:
        def b64(data: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

        token = (
            b64({"alg": "none", "typ": "JWT"})
            + "."
            + b64(
                {
                    "iss": "https://accounts.google.com",
                    "aud": DEFAULT_AUDIENCE,
                    "email": DEFAULT_INVOKER,
                    "email_verified": True,
                    "iat": 1,
                    "exp": 4102444800,
                }
            )
            + "."
        )
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 401, task_id)

    def test_wrong_email_is_403(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(email="someone-else@test-project.iam.gserviceaccount.com")
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 403, task_id)
        assert response.json() == {"status": "forbidden"}
        assert "www-authenticate" not in response.headers

    def test_unverified_email_is_403(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(email_verified=False)
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 403, task_id)

    def test_missing_email_is_403(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(omit=("email", "email_verified"))
        task_id = new_id()
        response = worker.post("record", {"id": task_id}, token=token)
        _assert_rejected(worker, response.status_code, 403, task_id)

    def test_reason_is_logged_not_returned(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(email="intruder@example.com")
        name = new_id()
        response = worker.post(
            "record", {"id": name}, token=token, headers={"X-CloudTasks-TaskName": name}
        )
        assert response.status_code == 403
        assert "intruder" not in response.text
        entry = worker.wait_for_log(lambda e: e.get("task_name") == name)
        assert entry["severity"] == "WARNING"
        assert entry["outcome"] == "forbidden"
        assert "intruder@example.com is not an allowed invoker" in entry["reason"]

    def test_rejected_delivery_does_not_consume_the_task(self, worker: Worker) -> None:
        # A 401 must not mark the task done: the retry with a good token runs it.
        name = new_id()
        headers = {"X-CloudTasks-TaskName": name, "X-CloudTasks-QueueName": "q"}
        assert worker.post("record", {"id": name}, token="", headers=headers).status_code == 401
        assert worker.post("record", {"id": name}, headers=headers).status_code == 200
        assert len(worker.runs(name)) == 1


class TestCertificateCache:
    def test_certs_are_fetched_once_not_per_request(self, worker: Worker) -> None:
        assert worker.issuer is not None
        before = worker.issuer.fetches
        assert before >= 1, "the worker should have fetched the certs at startup"
        for i in range(5):
            # Distinct tokens, so the verified-token cache cannot hide a fetch.
            token = worker.issuer.token(extra={"nonce": i})
            assert worker.post("record", {"id": new_id()}, token=token).status_code == 200
        assert worker.issuer.fetches == before
