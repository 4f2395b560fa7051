"""ASGI wrapper giving the VMM simulator dstack's auth and response headers (spec §1).

When a token is set, every route except the simulator's own `/_sim/` control API needs one
of: `Authorization: Bearer <t>`, `X-Admin-Token: <t>`, Basic auth with password = token (or
user = token and an empty password), or `?token=<t>` on GET. Failure is 401 with an empty
body and `WWW-Authenticate: Basic realm="dstack-vmm API"`. Every response carries
`X-App-Version` and `X-Accel-Buffering: no`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/_sim/"
_UNAUTHORIZED_HEADERS = [
    (b"www-authenticate", b'Basic realm="dstack-vmm API"'),
    (b"content-length", b"0"),
]


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def _basic_ok(credentials: str, token: str) -> bool:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, _, password = decoded.partition(":")
    return _same(password, token) or (password == "" and _same(user, token))


def is_authorized(scope: Scope, token: str) -> bool:
    """Whether the request carries `token` in one of the ways dstack accepts."""
    headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}
    scheme, _, credentials = headers.get(b"authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _same(credentials.strip(), token):
        return True
    if scheme.lower() == "basic" and _basic_ok(credentials, token):
        return True
    if b"x-admin-token" in headers and _same(headers[b"x-admin-token"], token):
        return True
    if scope["method"] == "GET":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return any(_same(value, token) for value in query.get("token", []))
    return False


class DstackFront:
    """Wraps an ASGI app with dstack's auth check and response headers."""

    def __init__(self, app: Asgi, *, token: str | None, version: str) -> None:
        self._app = app
        self._token = token
        self._extra = [(b"x-app-version", version.encode()), (b"x-accel-buffering", b"no")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        extra = self._extra

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        token = self._token
        guarded = token is not None and not scope["path"].startswith(CONTROL_PREFIX)
        if guarded and token is not None and not is_authorized(scope, token):
            headers = [*_UNAUTHORIZED_HEADERS, *extra]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await self._app(scope, receive, send_with_headers)
