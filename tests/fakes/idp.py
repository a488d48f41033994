"""A fake OpenID Connect identity provider: discovery and JWKS on loopback, keys made per test.

``FakeIdP`` is an ASGI app serving ``/.well-known/openid-configuration`` and ``/jwks``; ``issue``
signs a token with one of its RSA keys (``kid`` ``k1`` at first; ``rotate`` adds another to
the published set), ``foreign`` signs with a key the JWKS never published. Set ``down`` to answer
503 to everything, as an IdP that is away.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fakes.asgi import lifespan, send_json


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeIdP:
    audience: str = "tokenmeter"
    url: str = ""  # the issuer, set once the server has its port
    down: bool = False
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=lambda: {"k1": _rsa()})
    jwks_requests: int = 0

    def rotate(self, kid: str) -> None:
        self.keys[kid] = _rsa()

    def issue(self, sub: str, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": self.audience, "sub": sub, "iat": now, "exp": now + 600}
        body.update(claims)
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def foreign(self, sub: str) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": self.audience, "sub": sub, "exp": now + 600}
        return jwt.encode(body, _rsa(), algorithm="RS256", headers={"kid": "not-published"})

    def _jwks(self) -> dict[str, Any]:
        published = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            published.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": published}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await lifespan(scope, receive, send):
            return
        if self.down:
            await send_json(send, 503, {"error": "down"})
        elif scope["path"] == "/.well-known/openid-configuration":
            await send_json(send, 200, {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})
        elif scope["path"] == "/jwks":
            self.jwks_requests += 1
            await send_json(send, 200, self._jwks())
        else:
            await send_json(send, 404, {"error": "not found"})
