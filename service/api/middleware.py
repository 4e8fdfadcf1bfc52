"""Pure ASGI middleware: bearer keys on ``/v1`` (401) and ``/v1/admin`` (403 / 401), and a
request body limit (413)."""

from __future__ import annotations

import hmac
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.logs import log_admin

__all__ = ["BearerAuth", "BodySizeLimit"]


class _TooLarge(HTTPException):
    """Raised from ``receive``: the app's HTTP error handler answers it (413, JSON)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))


def _message(limit: int) -> str:
    return f"request body larger than the limit of {limit:,} bytes"


class BodySizeLimit:
    """Answer 413 to a body larger than ``max_bytes``: at once when ``Content-Length`` says
    so, otherwise as soon as the streamed body passes the limit (nothing more is read)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": _message(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
                break
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)


class BearerAuth:
    """Bearer keys, two scopes: ``/v1/admin/*`` needs the admin key, the rest of ``/v1``
    the API key (when one is set). Tokens are compared with :func:`hmac.compare_digest`.

    - ``/v1`` with an API key: 401 without it. No API key: open, as before.
    - ``/v1/admin``: 403 while no admin key is configured (the routes are disabled); the
      admin key passes; the API key gets 403 (it never grants admin); anything else 401.
      Every refusal there is logged at warning level.

    Done here rather than as a route dependency: it guards every route the same way, before
    the body is read, and costs next to nothing per request.
    """

    def __init__(
        self,
        app: ASGIApp,
        key: str | None,
        admin_key: str | None = None,
        prefix: str = "/v1",
        admin_prefix: str = "/v1/admin",
    ) -> None:
        self.app = app
        self.key = key.encode() if key is not None else None
        self.admin_key = admin_key.encode() if admin_key is not None else None
        self.prefix = prefix
        self.admin_prefix = admin_prefix

    @staticmethod
    def _under(path: str, prefix: str) -> bool:
        return path == prefix or path.startswith(prefix + "/")

    @staticmethod
    def _token(scope: Scope) -> bytes:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                return rest.strip() if scheme.lower() == b"bearer" else b""
        return b""

    @staticmethod
    def _matches(token: bytes, key: bytes | None) -> bool:
        return bool(token) and key is not None and hmac.compare_digest(token, key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        admin = self._under(path, self.admin_prefix)
        if not admin and (self.key is None or not self._under(path, self.prefix)):
            await self.app(scope, receive, send)  # open: no header looked at
            return
        token = self._token(scope)
        if admin:
            if self.admin_key is None:
                log_admin(scope, "admin request refused", outcome="disabled")
                await _refuse(send, 403, ADMIN_DISABLED)
            elif self._matches(token, self.admin_key):
                await self.app(scope, receive, send)
            elif self._matches(token, self.key):
                log_admin(scope, "admin request refused", outcome="api_key")
                await _refuse(send, 403, API_KEY_NOT_ADMIN)
            else:
                log_admin(scope, "admin request refused", outcome="unauthenticated")
                await _refuse(send, 401, INVALID_TOKEN)
            return
        if self._matches(token, self.key):
            await self.app(scope, receive, send)
            return
        await _refuse(send, 401, INVALID_TOKEN)


INVALID_TOKEN = "missing or invalid bearer token"
ADMIN_DISABLED = (
    "admin routes are disabled: set ADVISOR_ADMIN_KEY (a key of its own, not ADVISOR_API_KEY)"
    " and send it as the bearer token to enable them"
)
API_KEY_NOT_ADMIN = "the API key does not grant admin routes; use the admin key (ADVISOR_ADMIN_KEY)"


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
