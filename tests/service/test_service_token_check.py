"""The token check's parts on their own: the certificate cache and the verifier.

Against a real certs endpoint on 127.0.0.1 (`tests.service.support.LocalIssuer`)
with really signed tokens; time is a fake clock where expiry matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from contract.names import GOOGLE_CERTS_URL
from emulator.oidc import OidcIssuer
from service.auth import (
    GOOGLE_ISSUERS,
    AuthError,
    CertCache,
    CertsUnavailableError,
    TokenVerifier,
    issuers_for,
    parse_certs,
)
from tests.service.support import DEFAULT_AUDIENCE, DEFAULT_INVOKER, LocalIssuer


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def signing_key() -> OidcIssuer:
    return OidcIssuer()


@pytest.fixture
def local_issuer(signing_key: OidcIssuer) -> Iterator[LocalIssuer]:
    """A fresh issuer (server, fetch counter, key list) per test, with a shared first key."""
    with LocalIssuer(max_age_s=100, key=signing_key) as issuer:
        yield issuer


class TestCertCache:
    """Against a real HTTP certs endpoint; time is a fake clock."""

    def test_max_age_is_honoured(self, local_issuer: LocalIssuer) -> None:
        async def scenario() -> None:
            clock = FakeClock()
            async with httpx.AsyncClient() as http:
                cache = CertCache(local_issuer.certs_url, http, clock=clock)
                kid = local_issuer.keys[0].kid
                assert kid in await cache.get(kid)
                clock.now += 99
                await cache.get(kid)
                assert local_issuer.fetches == 1
                clock.now += 2
                await cache.get(kid)
                assert local_issuer.fetches == 2

        asyncio.run(scenario())

    def test_unknown_key_id_refetches_at_most_every_min_refresh(
        self, local_issuer: LocalIssuer
    ) -> None:
        async def scenario() -> None:
            clock = FakeClock()
            async with httpx.AsyncClient() as http:
                cache = CertCache(local_issuer.certs_url, http, min_refresh_s=30, clock=clock)
                await cache.get(None)
                clock.now += 31
                rotated = local_issuer.rotate()
                assert rotated.kid in await cache.get(rotated.kid)  # key rotation: refetched
                assert local_issuer.fetches == 2
                for _ in range(5):  # a forged kid must not turn requests into fetches
                    assert "forged" not in await cache.get("forged")
                assert local_issuer.fetches == 2
                clock.now += 31
                await cache.get("forged")
                assert local_issuer.fetches == 3

        asyncio.run(scenario())

    def test_concurrent_misses_share_one_fetch(self, local_issuer: LocalIssuer) -> None:
        async def scenario() -> None:
            async with httpx.AsyncClient() as http:
                cache = CertCache(local_issuer.certs_url, http)
                await asyncio.gather(*(cache.get(None) for _ in range(20)))
            assert local_issuer.fetches == 1

        asyncio.run(scenario())

    def test_outage_keeps_the_cached_keys(self, local_issuer: LocalIssuer) -> None:
        async def scenario() -> None:
            clock = FakeClock()
            async with httpx.AsyncClient() as http:
                cache = CertCache(local_issuer.certs_url, http, clock=clock)
                kid = local_issuer.keys[0].kid
                await cache.get(kid)
                clock.now += 101
                local_issuer.fail_next_fetches = 1
                assert kid in await cache.get(kid)

        asyncio.run(scenario())

    def test_max_age_zero_is_floored_at_min_refresh(self, local_issuer: LocalIssuer) -> None:
        local_issuer.max_age_s = 0

        async def scenario() -> None:
            clock = FakeClock()
            async with httpx.AsyncClient() as http:
                cache = CertCache(local_issuer.certs_url, http, min_refresh_s=30, clock=clock)
                kid = local_issuer.keys[0].kid
                for _ in range(50):
                    assert kid in await cache.get(kid)
                assert local_issuer.fetches == 1
                clock.now += 31
                await cache.get(kid)
                assert local_issuer.fetches == 2

        asyncio.run(scenario())

    def test_a_failed_first_fetch_answers_the_requests_queued_behind_it(
        self, local_issuer: LocalIssuer
    ) -> None:
        async def scenario() -> None:
            clock = FakeClock()
            async with httpx.AsyncClient() as http:
                cache = CertCache(local_issuer.certs_url, http, clock=clock)
                local_issuer.fail_next_fetches = 1
                results = await asyncio.gather(
                    *(cache.get(None) for _ in range(10)), return_exceptions=True
                )
                assert all(isinstance(r, CertsUnavailableError) for r in results)
                assert local_issuer.fetches == 1  # one (failed) fetch for the ten requests
                clock.now += 6  # past the retry pause: fetched again, and it works
                assert await cache.get(None)
                assert local_issuer.fetches == 2

        asyncio.run(scenario())

    def test_no_keys_at_all_is_certs_unavailable(self, local_issuer: LocalIssuer) -> None:
        async def scenario() -> None:
            async with httpx.AsyncClient() as http:
                cache = CertCache(local_issuer.certs_url, http)
                local_issuer.fail_next_fetches = 1
                with pytest.raises(CertsUnavailableError, match="503"):
                    await cache.get(None)

        asyncio.run(scenario())


class TestTokenVerifier:
    def _verify(self, issuer: LocalIssuer, authorization: str | None) -> object:
        async def scenario() -> object:
            async with httpx.AsyncClient() as http:
                verifier = TokenVerifier(
                    audience=DEFAULT_AUDIENCE,
                    allowed_emails=frozenset({DEFAULT_INVOKER}),
                    certs=CertCache(issuer.certs_url, http),
                )
                return await verifier.verify(authorization)

        return asyncio.run(scenario())

    @pytest.mark.parametrize(
        "token",
        [
            "ya29.a0AfB_byC8ExampleAccessTokenThatIsNotAJwt0123456789",
            "eyJhbGciOiJSUzI1NiJ9.bm90LWpzb24tYXQtYWxsLXJlYWxseQ.c2lnbmF0dXJlLWJ5dGVz",
            "onlyonesegmentbutlongenoughtomatter",
        ],
    )
    def test_the_reason_never_quotes_the_token(self, local_issuer: LocalIssuer, token: str) -> None:
        with pytest.raises(AuthError) as caught:
            self._verify(local_issuer, f"Bearer {token}")
        assert caught.value.status == 401
        for segment in token.split("."):
            assert segment not in caught.value.reason

    def test_valid_token_returns_its_claims(self, local_issuer: LocalIssuer) -> None:
        claims = self._verify(local_issuer, f"Bearer {local_issuer.token()}")
        assert isinstance(claims, dict)
        assert claims["email"] == DEFAULT_INVOKER

    def test_token_expired_a_second_ago_is_rejected(self, local_issuer: LocalIssuer) -> None:
        # The clock skew is for `iat` only: expiry is exact.
        token = local_issuer.token(issued_ago=3601, expires_in=3600)
        with pytest.raises(AuthError, match="expired"):
            self._verify(local_issuer, f"Bearer {token}")

    def test_token_issued_a_few_seconds_in_the_future_is_accepted(
        self, local_issuer: LocalIssuer
    ) -> None:
        token = local_issuer.token(issued_ago=-5)
        assert self._verify(local_issuer, f"Bearer {token}")

    def test_token_issued_far_in_the_future_is_rejected(self, local_issuer: LocalIssuer) -> None:
        token = local_issuer.token(issued_ago=-60)
        with pytest.raises(AuthError, match="too early"):
            self._verify(local_issuer, f"Bearer {token}")

    def test_keys_from_a_jwks_url_verify_the_same_tokens(self, local_issuer: LocalIssuer) -> None:
        async def scenario() -> object:
            async with httpx.AsyncClient() as http:
                verifier = TokenVerifier(
                    audience=DEFAULT_AUDIENCE,
                    allowed_emails=frozenset({DEFAULT_INVOKER}),
                    certs=CertCache(local_issuer.jwks_url, http),
                    issuers=GOOGLE_ISSUERS,
                )
                return await verifier.verify(f"Bearer {local_issuer.token()}")

        claims = asyncio.run(scenario())
        assert isinstance(claims, dict)
        assert claims["email"] == DEFAULT_INVOKER

    @pytest.mark.parametrize(
        "document",
        [[], {}, {"kid": 5}, {"keys": []}, {"keys": [{"kty": "EC", "kid": "k"}]}, "pem"],
    )
    def test_unusable_certs_documents_are_refused(self, document: object) -> None:
        with pytest.raises(ValueError, match=r"expected a JSON object|no RSA key"):
            parse_certs(document)

    def test_string_email_verified_is_accepted(self, local_issuer: LocalIssuer) -> None:
        token = local_issuer.token(email_verified="true")
        assert self._verify(local_issuer, f"Bearer {token}")

    @pytest.mark.parametrize(
        ("kwargs", "status", "reason"),
        [
            ({"expires_in": -60}, 401, "expired"),
            ({"audience": "https://other"}, 401, "wrong audience"),
            ({"email_verified": "false"}, 403, "not verified"),
            ({"email": "x@y.z"}, 403, "not an allowed invoker"),
        ],
    )
    def test_rejections_carry_status_and_reason(
        self, local_issuer: LocalIssuer, kwargs: dict[str, object], status: int, reason: str
    ) -> None:
        token = local_issuer.token(**kwargs)  # type: ignore[arg-type]
        with pytest.raises(AuthError) as caught:
            self._verify(local_issuer, f"Bearer {token}")
        assert caught.value.status == status
        assert reason in caught.value.reason

    def test_issuer_with_a_trailing_slash_is_the_same_issuer(
        self, local_issuer: LocalIssuer
    ) -> None:
        token = local_issuer.token(issuer=local_issuer.origin + "/")

        async def scenario() -> object:
            async with httpx.AsyncClient() as http:
                verifier = TokenVerifier(
                    audience=DEFAULT_AUDIENCE,
                    allowed_emails=frozenset({DEFAULT_INVOKER}),
                    certs=CertCache(local_issuer.certs_url, http),
                )
                return await verifier.verify(f"Bearer {token}")

        assert asyncio.run(scenario())

    def test_issuers_for_a_local_certs_url_add_its_origin(self) -> None:
        assert issuers_for(GOOGLE_CERTS_URL) == GOOGLE_ISSUERS
        local = issuers_for("http://127.0.0.1:8124/oauth2/v1/certs")
        assert local == GOOGLE_ISSUERS | {"http://127.0.0.1:8124"}
