"""Single sign-on: a bearer JWT from the company's identity provider names the caller.

With ``TOKENMETER_OIDC_ISSUER`` (and ``_AUDIENCE``) set, a request whose ``Authorization:
Bearer`` or ``x-api-key`` holds a JWT is verified with PyJWT against the issuer's JWKS: the
signature, ``exp``, ``aud`` and ``iss`` must hold. Its ``sub`` (or ``TOKENMETER_OIDC_USER_CLAIM``)
is the user; the first entry of its groups claim (``TOKENMETER_OIDC_GROUPS_CLAIM``) the team. The
request then goes upstream with the company key, like a tokenmeter key (``credentials.KeyGate``).

The signing keys are held in memory by ``kid``. A token with a ``kid`` not held makes one
refresh of the JWKS (in a worker thread, never on the event loop, at most one at a time and one
per ``REFRESH_COOLDOWN_S``), so an IdP's key rotation is picked up at once. It fails closed: a
token that cannot be verified (the JWKS unreachable, an unknown ``kid``, a bad signature, an
expired or foreign token) is ``KeyRefused`` (401) and nothing is forwarded. The JWKS address is
``TOKENMETER_OIDC_JWKS_URL``, else the ``jwks_uri`` of the issuer's discovery document.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from proxy.credentials import Identity, KeyRefused, client_keys

if TYPE_CHECKING:  # PyJWT (and the cryptography it loads) only once SSO is configured
    import jwt

REFRESH_COOLDOWN_S = 10.0
FETCH_TIMEOUT_S = 5.0
LEEWAY_S = 30
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


def looks_like_jwt(value: str) -> bool:
    return value.startswith("eyJ") and value.count(".") == 2


def bearer_jwt(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The JWT a client sent as its key, if any."""
    return next((key for key in client_keys(raw_headers) if looks_like_jwt(key)), None)


class OidcVerifier:
    """Verifies tokens of one issuer for one audience (module doc)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        user_claim: str = "sub",
        groups_claim: str = "groups",
    ) -> None:
        import jwt  # noqa: F401  (here, not at the top: a proxy without SSO never loads it)

        self._issuer = issuer
        self._audience = audience
        self._jwks_url = jwks_url
        self._user_claim = user_claim
        self._groups_claim = groups_claim
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = asyncio.Lock()
        self._refreshed_at = -REFRESH_COOLDOWN_S

    async def verify(self, token: str) -> Identity:
        """The caller a valid token names, or ``KeyRefused`` saying why it is not valid."""
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise KeyRefused("tokenmeter: the bearer token is not a JWT", "bad_token") from None
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            await self._refresh()
            key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise KeyRefused(
                f"tokenmeter: the token's signing key {kid!r} is not in the issuer's JWKS",
                "unknown_signing_key",
            )
        return self._identity(self._claims(token, key))

    def _claims(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise KeyRefused("tokenmeter: the bearer token has expired", "expired_token") from None
        except jwt.PyJWTError as exc:
            message = f"tokenmeter: the bearer token is not valid: {exc}"
            raise KeyRefused(message, "bad_token") from None
        return claims

    def _identity(self, claims: dict[str, Any]) -> Identity:
        user = claims.get(self._user_claim)
        if not isinstance(user, str) or not user.strip():
            raise KeyRefused(
                f"tokenmeter: the token has no {self._user_claim!r} claim to name its user",
                "bad_token",
            )
        groups = claims.get(self._groups_claim)
        if isinstance(groups, list):
            groups = next((g for g in groups if isinstance(g, str) and g.strip()), None)
        team = groups if isinstance(groups, str) and groups.strip() else None
        return Identity(user.strip()[:256], team, None, "oidc")

    async def _refresh(self) -> None:
        import jwt

        async with self._lock:
            if time.monotonic() - self._refreshed_at < REFRESH_COOLDOWN_S:
                return
            self._refreshed_at = time.monotonic()
            try:
                self._keys = await asyncio.to_thread(self._fetch_keys)
            except (OSError, ValueError, jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
                self._refreshed_at = -REFRESH_COOLDOWN_S  # try again on the next token
                raise KeyRefused(
                    f"tokenmeter: cannot verify the token: the issuer's keys are unreachable "
                    f"({type(exc).__name__})",
                    "idp_unreachable",
                ) from None

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        import jwt

        url = self._jwks_url or self._discover()
        client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S)
        return {key.key_id: key for key in client.get_jwk_set().keys if key.key_id}

    def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        if not url.startswith(("https://", "http://")):
            raise ValueError("the issuer is not an http(s) URL")
        import urllib.request

        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310
            document = json.load(answer)
        jwks = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks, str):
            raise ValueError("the discovery document has no jwks_uri")
        self._jwks_url = jwks
        return jwks
