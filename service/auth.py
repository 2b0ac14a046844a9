"""The in-app OIDC token check, defence in depth behind Cloud Run's own.

`TokenVerifier.verify(authorization_header)` returns the verified claims or
raises `AuthError` with the status to answer (401: missing or invalid token,
403: a valid token of an identity that is not allowed) and the reason, which
goes to the log only. The check follows Google's rules for validating an ID
token (https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken):
RS256 signature against the PEM certs at the configured URL (Google's by
default, the local issuer's in the local stack) with `google.auth.jwt.decode`;
`aud` equal to the audience; not expired; `iss` Google's (or, with a non-Google
certs URL, that URL's origin); `email_verified` true; `email` in the allowed list.
The 10 s clock skew applies to `iat` and `nbf` (which google-auth ignores) only:
an expired token is rejected the second it expires.

Certificates are cached for the `max-age` of the certs response (at least
`min_refresh_s`), fetched asynchronously (never a blocking call on the event
loop), fetched again at most every `min_refresh_s` when a token names an
unknown key id (key rotation), and kept past their expiry if the certs URL is
unreachable. With no keys yet, a failed fetch answers the requests queued
behind it for a few seconds instead of each waiting out its own timeout. A
token that verified is remembered until it expires, keyed by its full text:
Cloud Tasks reuses an ID token for many tasks, so the RSA check runs once per
token, not per task. Rejection reasons go to the log and never quote the token
(google-auth's error text is rewritten, since it quotes decoded token bytes).

It deliberately does not check authorisation beyond the email allow-list
(no per-task-type permissions) and accepts only RS256, which is what Google
signs ID tokens with.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from google.auth import jwt

from contract.names import GOOGLE_CERTS_URL, GOOGLE_ISSUER

logger = logging.getLogger("service.auth")

GOOGLE_ISSUERS: Final = frozenset({GOOGLE_ISSUER, "accounts.google.com"})
CLOCK_SKEW_S: Final = 10
ALLOWED_ALGORITHMS: Final = frozenset({"RS256"})
DEFAULT_CERTS_MAX_AGE_S: Final = 300.0
CERTS_FETCH_TIMEOUT_S: Final = 5.0
# With no keys yet, a failed fetch is not retried for this long (capped by min_refresh_s).
FAILED_FETCH_RETRY_S: Final = 5.0
VERIFIED_TOKEN_CACHE_SIZE: Final = 1024

_MAX_AGE: Final = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class AuthError(Exception):
    """A rejected request: `status` is 401 or 403, `reason` is for the log only."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CertsUnavailableError(Exception):
    """No certificates could be fetched yet; the delivery should be retried."""


def issuers_for(certs_url: str) -> frozenset[str]:
    """Issuers accepted for tokens verified with keys from `certs_url`."""
    if certs_url == GOOGLE_CERTS_URL:
        return GOOGLE_ISSUERS
    parts = urlsplit(certs_url)
    # A local issuer (the emulator) names itself by its origin, or mimics Google.
    return GOOGLE_ISSUERS | {f"{parts.scheme}://{parts.netloc}"}


def _max_age(cache_control: str | None, age: str | None) -> float:
    if cache_control:
        match = _MAX_AGE.search(cache_control)
        if match:
            seconds = float(match.group(1))
            if age and age.isdigit():
                seconds -= float(age)
            return max(seconds, 0.0)
    return DEFAULT_CERTS_MAX_AGE_S


def parse_certs(document: Any) -> dict[str, str]:
    """Key id -> PEM, from Google's v1 PEM map or from a JWKS (`{"keys": [...]}`).

    The worker is configured with a v1 URL; accepting the v3/JWKS shape too means
    pointing `TASKS_CERTS_URL` at either of an issuer's endpoints just works.
    """
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        keys = {
            key["kid"]: _jwk_to_pem(key)
            for key in document["keys"]
            if isinstance(key, dict) and key.get("kty") == "RSA" and isinstance(key.get("kid"), str)
        }
        if not keys:
            raise ValueError("the JWKS has no RSA key with a kid")
        return keys
    if (
        isinstance(document, dict)
        and document
        and all(isinstance(k, str) and isinstance(v, str) for k, v in document.items())
    ):
        return dict(document)
    raise ValueError(
        "expected a JSON object of key id -> PEM certificate (or a JWKS with RSA keys)"
    )


def _jwk_to_pem(key: Mapping[str, Any]) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    def number(name: str) -> int:
        value = key.get(name)
        if not isinstance(value, str):
            raise ValueError(f"JWK {key.get('kid')!r} has no {name!r}")
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    public_key = RSAPublicNumbers(e=number("e"), n=number("n")).public_key()
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class CertCache:
    """The PEM certificates of the issuer, keyed by key id, cached."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        min_refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._certs: dict[str, str] = {}
        self._expires_at = float("-inf")
        self._fetched_at = float("-inf")
        self._failure: CertsUnavailableError | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def get(self, kid: str | None) -> Mapping[str, str]:
        """Certificates that should hold `kid`; fetches only when needed."""
        now = self._clock()
        if self._certs and now < self._expires_at and (kid is None or kid in self._certs):
            return self._certs
        async with self._lock:
            # Someone else may have fetched while this request waited for the lock.
            now = self._clock()
            fresh = self._certs and now < self._expires_at
            known = kid is None or kid in self._certs
            if fresh and known:
                return self._certs
            if fresh and now - self._fetched_at < self._min_refresh_s:
                # Unknown key id, but we fetched moments ago: a forged kid must not
                # turn every request into a fetch. The decode will fail with 401.
                return self._certs
            if self._failure is not None and now - self._fetched_at < self._retry_failed_s:
                # No keys and the last fetch failed moments ago: requests queued behind
                # it share that answer instead of each waiting out its own timeout.
                raise self._failure
            await self._fetch()
            return self._certs

    @property
    def _retry_failed_s(self) -> float:
        return min(self._min_refresh_s, FAILED_FETCH_RETRY_S)

    async def prefetch(self) -> None:
        """Fetch now (at startup) so the first task does not wait; never raises."""
        try:
            async with self._lock:
                await self._fetch()
        except CertsUnavailableError as exc:
            logger.warning("could not prefetch token certificates: %s", exc)

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()
        try:
            response = await self._http.get(self.url, timeout=CERTS_FETCH_TIMEOUT_S)
            response.raise_for_status()
            certs = parse_certs(json.loads(response.content))
        except (httpx.HTTPError, ValueError) as exc:
            if self._certs:
                # Keep verifying with the keys we have: Google rotates keys well
                # before the old ones stop being used, and an outage of the certs
                # URL must not reject every task.
                logger.warning(
                    "token certificates refresh from %s failed, keeping %d cached keys: %s",
                    self.url,
                    len(self._certs),
                    exc,
                )
                self._expires_at = self._clock() + self._min_refresh_s
                return
            self._failure = CertsUnavailableError(f"fetching {self.url} failed: {exc}")
            raise self._failure from exc
        self._failure = None
        self._certs = certs
        # max-age=0 (or a past Age) must not make every new token a fetch.
        self._expires_at = self._fetched_at + max(
            _max_age(response.headers.get("cache-control"), response.headers.get("age")),
            self._min_refresh_s,
        )
        self.fetch_count += 1
        logger.info(
            "fetched %d token certificates from %s",
            len(certs),
            self.url,
            extra={"fields": {"key_ids": sorted(certs)}},
        )


class TokenVerifier:
    """Verify `Authorization: Bearer <Google-style OIDC ID token>`."""

    def __init__(
        self,
        *,
        audience: str,
        allowed_emails: frozenset[str],
        certs: CertCache,
        issuers: frozenset[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self.allowed_emails = frozenset(e.lower() for e in allowed_emails)
        self.certs = certs
        self.issuers = frozenset(
            i.rstrip("/") for i in (issuers if issuers is not None else issuers_for(certs.url))
        )
        self._clock = clock
        self._verified: OrderedDict[str, Mapping[str, Any]] = OrderedDict()

    async def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """The verified claims; raises `AuthError` or `CertsUnavailableError`."""
        token = _bearer_token(authorization)
        claims = self._verified.get(token)
        if claims is not None and self._clock() < float(claims["exp"]):
            self._verified.move_to_end(token)
        else:
            self._verified.pop(token, None)
            claims = await self._verify_signature(token)
        self._check_identity(claims)
        return claims

    async def _verify_signature(self, token: str) -> Mapping[str, Any]:
        try:
            header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except Exception as exc:  # any garbage in a token is the caller's problem: 401
            raise AuthError(401, _rejection(exc)) from None
        if not isinstance(header, dict):
            raise AuthError(401, "malformed token: header is not a JSON object")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            # isinstance first: a list or object is unhashable, `in` would raise (500).
            named = alg if isinstance(alg, str) and alg in _JOSE_ALGORITHMS else "an unknown one"
            raise AuthError(401, f"token algorithm {named} not accepted (RS256 only)")
        kid = header.get("kid")
        certs = await self.certs.get(kid if isinstance(kid, str) else None)
        try:
            # CPU-bound but short: ~50 us for RS256 with the X.509 parse
            # (benchmarks/service_bench.py), less than a hop to a thread and back, so
            # it stays on the event loop; and it runs once per token (cache above).
            claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=certs, audience=self.audience, clock_skew_in_seconds=CLOCK_SKEW_S
            )
        except Exception as exc:  # signature, expiry, audience, key id: all 401
            raise AuthError(401, _rejection(exc, audience=self.audience)) from None
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer.rstrip("/") not in self.issuers:
            raise AuthError(
                401, f"token issuer {claims.get('iss')!r} not in {sorted(self.issuers)}"
            )
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise AuthError(401, "token has no numeric exp claim")
        # google-auth applies the skew to `iat` and `exp` alike; the skew is there for
        # a freshly minted token from a clock slightly ahead, so expiry stays exact.
        now = self._clock()
        if now >= exp:
            raise AuthError(401, f"token expired at {exp}")
        # google-auth does not read `nbf` (RFC 7519 section 4.1.5: "MUST NOT be accepted
        # for processing" before it); the same skew as google-auth allows for `iat`.
        nbf = claims.get("nbf")
        if nbf is not None:
            if isinstance(nbf, bool) or not isinstance(nbf, int | float):
                raise AuthError(401, "token nbf claim is not a number")
            if now + CLOCK_SKEW_S < nbf:
                raise AuthError(401, f"token not valid before {nbf} ({nbf - now:.0f} s from now)")
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_TOKEN_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _check_identity(self, claims: Mapping[str, Any]) -> None:
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise AuthError(403, "token has no email claim")
        if claims.get("email_verified") not in (True, "true"):
            raise AuthError(403, f"token email {email} is not verified")
        if email.lower() not in self.allowed_emails:
            raise AuthError(403, f"token email {email} is not an allowed invoker")


# What google-auth's error says, by its first words, rewritten without anything it
# quotes: its messages embed the token, its decoded segments, `kid` or `aud`, and
# the reason goes to the log. Anything not listed is named by its type only.
_GOOGLE_AUTH_REASONS: Final = (
    ("Wrong number of segments", "malformed token: not three dot-separated segments"),
    ("Can't parse segment", "malformed token: a segment is not JSON"),
    ("Header segment should be", "malformed token: header is not a JSON object"),
    ("Payload segment should be", "malformed token: payload is not a JSON object"),
    ("Token does not contain required claim", "token lacks a required claim (iat, exp)"),
    ("Token used too early", f"token used too early: iat beyond {CLOCK_SKEW_S} s ahead"),
    ("Token expired", "token expired"),
    ("Unsupported signature algorithm", "token algorithm not supported"),
    ("The key algorithm", "token algorithm not supported"),
    ("Certificate for key id", "token key id is not among the issuer's certificates"),
    ("Certificate key type does not match", "token algorithm does not match the key"),
    ("Could not verify token signature", "token signature does not verify"),
)
# RFC 7518 section 3.1: names safe to quote back (anything else could be token text).
_JOSE_ALGORITHMS: Final = frozenset(
    {"none", *(f"{f}{n}" for f in ("HS", "RS", "ES", "PS") for n in (256, 384, 512))}
)


def _rejection(exc: Exception, *, audience: str | None = None) -> str:
    """Why google-auth refused a token, without quoting any of the token.

    A mistaken access token, or a real ID token sent to the wrong place, must not
    end up in the log, nor whatever a caller chose to put into a claim.
    """
    message = str(exc)
    if message.startswith("Token has wrong audience"):
        return f"token has the wrong audience (expected {audience!r})"
    if isinstance(exc, UnicodeDecodeError):
        return "malformed token: a segment is not UTF-8"
    if isinstance(exc, binascii.Error):
        return "malformed token: a segment is not base64url"
    for prefix, reason in _GOOGLE_AUTH_REASONS:
        if message.startswith(prefix):
            return reason
    return f"token rejected ({type(exc).__name__})"


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError(401, "no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "Authorization header is not 'Bearer <token>'")
    return token
