"""Access control for the web service, as one ASGI middleware.

- **Token**: with a token set, every request (page, static files, API, docs) needs it, as
  ``Authorization: Bearer TOKEN``, the ``t23d_token`` cookie, or ``?token=TOKEN`` (which also sets the
  cookie, so a link ``http://host:8023/?token=...`` opens the page and the page's own requests work).
- **Host**: on a loopback bind, the ``Host`` header must name a loopback host (stops DNS rebinding).
- **Origin**: a state-changing request (not GET/HEAD/OPTIONS) from a browser must come from the page's
  own origin (stops other web sites from submitting jobs through a visitor's browser).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

COOKIE = "t23d_token"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t23d: token needed</title>
<meta name="viewport" content="width=device-width,initial-scale=1"></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto">
<h1>t23d</h1><p>This service needs its access token (the <code>--token</code> it was started with).</p>
<form method="get" action="/"><label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open</button></form></body></html>"""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``-style names and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> str:
    """The host part of a ``Host`` header value (without the port)."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class AccessMiddleware:
    """Token, Host and Origin checks in front of the app (see the module docstring)."""

    def __init__(self, app: Any, token: str | None, loopback_only_hosts: bool):
        self.app = app
        self.token = token
        self.loopback_only_hosts = loopback_only_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.loopback_only_hosts and not is_loopback_host(_split_host(host)):
            await _reply(
                send, 421, {"detail": f"Host {host!r} is not served here (this service listens on loopback)"}
            )
            return
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if method not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null":
            if urlsplit(origin).netloc.lower() != host.lower():
                await _reply(send, 403, {"detail": f"cross-origin request from {origin} refused"})
                return
        if self.token is None:
            await self.app(scope, receive, send)
            return
        query_token = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None])[0]
        given = self._bearer(headers) or query_token or self._cookie(headers)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            path = scope.get("path", "/")
            if path in ("/", "/index.html") and method == "GET":
                await _reply_html(send, 401, _LOGIN_PAGE)
            else:
                detail = "missing or wrong token: send 'Authorization: Bearer TOKEN' (see t23d serve --token)"
                await _reply(send, 401, {"detail": detail}, extra=[(b"www-authenticate", b"Bearer")])
            return
        if query_token is not None:
            send = _with_cookie(send, self.token)
        await self.app(scope, receive, send)

    @staticmethod
    def _bearer(headers: dict[str, str]) -> str | None:
        value = headers.get("authorization", "")
        return value[7:].strip() if value.lower().startswith("bearer ") else None

    @staticmethod
    def _cookie(headers: dict[str, str]) -> str | None:
        if "cookie" not in headers:
            return None
        jar = SimpleCookie()
        try:
            jar.load(headers["cookie"])
        except Exception:
            return None
        return jar[COOKIE].value if COOKIE in jar else None


def _with_cookie(send: Send, token: str) -> Send:
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = list(message.get("headers", [])) + [(b"set-cookie", cookie)]
        await send(message)

    return wrapped


async def _reply(send: Send, status: int, body: dict[str, Any], extra: list | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


async def _reply_html(send: Send, status: int, html: str) -> None:
    data = html.encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
