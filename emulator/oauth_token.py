"""``POST /token``: Google's OAuth 2.0 token endpoint, enough for clients to refresh.

Code written for Google authenticates with service-account credentials
(``google.oauth2.service_account``, firebase-admin's ``credentials.Certificate``)
and refreshes them before its first call by posting a signed JWT assertion to
the key file's ``token_uri`` (``https://oauth2.googleapis.com/token``). Pointed
at the emulator (emulator/redirect.py rewrites that origin), the refresh gets:

* ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with an assertion
  whose claims hold ``target_audience``: ``{"id_token": ...}``, an ID token for
  the assertion's ``iss`` signed by the emulator's issuer (as Google answers
  ``IDTokenCredentials``), which a worker trusting the emulator verifies;
* the same grant without ``target_audience``, or ``grant_type=refresh_token``
  (user credentials): an opaque ``access_token`` valid for an hour.

The assertion's signature is not checked (the API checks no caller either:
README "Known differences"); its claims are, so a malformed one is a 400 with
Google's ``{"error", "error_description"}`` body rather than a token.
"""

from __future__ import annotations

import secrets
from typing import Any, Final
from urllib.parse import parse_qs

from google.auth import exceptions, jwt

JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_TOKEN: Final = "refresh_token"  # noqa: S105 (OAuth's grant type name)
ACCESS_TOKEN_LIFETIME_S: Final = 3600
# Google's token endpoint takes form posts, which emulator/http_guard.py lets through here only.
FORM_TYPE: Final = "application/x-www-form-urlencoded"


class TokenError(ValueError):
    """A refused token request: ``error`` is OAuth's code, the message says what to fix."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": str(self)}


def _claims(assertion: str) -> dict[str, Any]:
    """The assertion's claims; the signature is not checked (the emulator trusts any key)."""
    try:
        claims = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
    except (exceptions.GoogleAuthError, ValueError) as exc:  # malformed, bad base64 or JSON
        raise TokenError(
            "invalid_grant", f"assertion is not a JWT (header.payload.signature): {exc}"
        ) from exc
    if not isinstance(claims, dict):
        raise TokenError("invalid_grant", "assertion payload is not a JSON object")
    return claims


def grant(form_body: bytes, id_token: Any) -> dict[str, Any]:
    """The JSON answer to a token request; ``id_token(email, audience)`` signs ID tokens.

    Raises:
        TokenError: the grant type is unsupported or the assertion is malformed.
    """
    form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace")).items()}
    grant_type = form.get("grant_type", "")
    if grant_type == JWT_BEARER:
        claims = _claims(form.get("assertion", ""))
        email = claims.get("iss")
        if not isinstance(email, str) or not email:
            raise TokenError("invalid_grant", "assertion has no 'iss' (the service account email)")
        audience = claims.get("target_audience")
        if audience is not None:
            if not isinstance(audience, str) or not audience:
                raise TokenError("invalid_grant", "assertion's 'target_audience' must be a string")
            return {"id_token": id_token(email, audience)}
    elif grant_type != REFRESH_TOKEN:
        raise TokenError(
            "unsupported_grant_type",
            f"grant_type {grant_type[:80]!r} is not supported: use {JWT_BEARER!r} "
            f"(service accounts) or {REFRESH_TOKEN!r}",
        )
    return {
        "access_token": "emulator-" + secrets.token_urlsafe(24),
        "expires_in": ACCESS_TOKEN_LIFETIME_S,
        "token_type": "Bearer",
    }
