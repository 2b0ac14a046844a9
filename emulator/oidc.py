"""A local OIDC issuer that mints Google-shaped ID tokens for task delivery.

Tokens are RS256 JWTs with a ``kid`` header and the claims Google puts in a
service account's ID token (``iss`` https://accounts.google.com, ``aud``,
``azp``, ``email``, ``email_verified``, ``sub``, ``iat``, ``exp``; see
https://developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload),
so a worker verifies them with ``google.oauth2.id_token.verify_token(..., certs_url=...)``
pointed at this issuer's ``/oauth2/v1/certs``.

This module is the one place that generates signing keys, signs tokens and
renders the public keys (v1 PEM certificates, v3 JWKS) for the whole
repository: the emulator dispatches with it, and the worker's tests
(tests/service/support.py) build their test issuer on it, adding key rotation
and hand-made claims (``OidcIssuer.sign``) for negative cases. It deliberately
does not serve HTTP (emulator.rest_api and the tests do), and it does not check
that the service account exists or that anyone may act as it: IAM is not
emulated.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from collections.abc import Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from contract.names import GOOGLE_ISSUER

TOKEN_LIFETIME_S: Final = 3600
# Signing costs about a millisecond; at 500 dispatches/s that would be half a
# core, so a token is reused until it has less than this much life left.
_REUSE_MARGIN_S: Final = 600


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def subject_for(email: str) -> str:
    """A stable 21-digit numeric ``sub`` for an email, shaped like Google's."""
    digest = int.from_bytes(hashlib.sha256(email.encode()).digest()[:9], "big")
    return str(10**20 + digest % (9 * 10**20))


def new_private_key_pem() -> bytes:
    """A fresh 2048-bit RSA key, PKCS#8 PEM (what ``OidcIssuer`` stores and loads)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def google_id_token_claims(
    email: str, audience: str, *, issued_at: int, lifetime_s: float = TOKEN_LIFETIME_S
) -> dict[str, Any]:
    """The claims of a Google service-account ID token for ``email``, issued at ``issued_at``."""
    sub = subject_for(email)
    return {
        "iss": GOOGLE_ISSUER,
        "aud": audience,
        "azp": sub,
        "sub": sub,
        "email": email,
        "email_verified": True,
        "iat": issued_at,
        "exp": int(issued_at + lifetime_s),
    }


class OidcIssuer:
    """Holds one RSA key and signs ID tokens with it.

    Args:
        private_key_pem: the key to load (a persistent emulator keeps it across
            restarts); a new one is generated when None.
        kid: the key id announced in tokens and certs; by default derived from
            the public key. Tests pass a published key's id to forge a token.
    """

    def __init__(self, private_key_pem: bytes | None = None, *, kid: str | None = None) -> None:
        if private_key_pem is None:
            private_key_pem = new_private_key_pem()
        loaded = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("the stored OIDC signing key is not an RSA key")
        self._key = loaded
        self.private_key_pem = private_key_pem
        public_der = loaded.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = kid or hashlib.sha1(public_der, usedforsecurity=False).hexdigest()
        # Loading the signer runs cryptography's key checks (tens of ms): once per key.
        self._signer = crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
            private_key_pem, key_id=self.kid
        )
        self.certificate_pem = self._self_signed_certificate()
        self._cache: dict[tuple[str, str], tuple[str, int]] = {}

    def _self_signed_certificate(self) -> str:
        # Google's v1 certs endpoint serves X.509 certificates, not bare keys.
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud-tasks-emulator")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, claims: Mapping[str, Any]) -> str:
        """``claims`` as an RS256 JWT with this key's ``kid``, exactly as given."""
        token: bytes = jwt.encode(self._signer, dict(claims))  # type: ignore[no-untyped-call]
        return token.decode()

    def id_token(self, email: str, audience: str, now: float | None = None) -> str:
        """An ID token for ``email`` with ``aud`` = ``audience`` (cached while fresh),
        issued at ``now``: the emulator passes its clock's time (so a fake clock
        governs ``iat``/``exp`` too); other callers get the wall clock."""
        now = int(time.time() if now is None else now)
        cached = self._cache.get((email, audience))
        if cached is not None and cached[1] - now > _REUSE_MARGIN_S:
            return cached[0]
        token = self.sign(google_id_token_claims(email, audience, issued_at=now))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(email, audience)] = (token, now + TOKEN_LIFETIME_S)
        return token

    def pem_certs(self) -> dict[str, str]:
        """Google's ``/oauth2/v1/certs`` shape: ``{kid: PEM certificate}``."""
        return {self.kid: self.certificate_pem}

    def jwk(self) -> dict[str, str]:
        """This key as one JSON Web Key (RFC 7517), as in Google's ``/oauth2/v3/certs``."""
        numbers = self._key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def jwks(self) -> dict[str, Any]:
        """Google's ``/oauth2/v3/certs`` shape (JWKS)."""
        return {"keys": [self.jwk()]}

    def discovery(self, base_url: str) -> dict[str, Any]:
        """``/.well-known/openid-configuration`` for this issuer."""
        return {
            "issuer": GOOGLE_ISSUER,
            "jwks_uri": f"{base_url}/oauth2/v3/certs",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": [
                "aud",
                "azp",
                "email",
                "email_verified",
                "exp",
                "iat",
                "iss",
                "sub",
            ],
        }
