"""Who may read the page and its API, and the headers every answer carries.

Design note (the token). With a token set, every path but the probes (``/metrics``,
``/healthz``; those too with ``protect_probes``) needs it, given one of two ways:

- ``Authorization: Bearer <token>``: for scripts and ``curl``;
- a cookie, for the browser: opening ``/?token=<token>`` once checks the token, sets an
  ``HttpOnly``, ``SameSite=Strict`` cookie and redirects to ``/``, so the token leaves the
  address bar (and the history, and any ``Referer``) at once. ``EventSource`` cannot send
  headers but sends the cookie. The cookie holds an HMAC of the token, not the token itself.

A query token is accepted on ``/`` only: elsewhere it would end up in access logs. Anything
else gets 401 with ``WWW-Authenticate: Bearer``.

Without a token the server listens on loopback only (``serve_flow`` refuses otherwise), and
requests must name a loopback host (``Host: 127.0.0.1:...``, ``localhost``, ``[::1]``): a web
page elsewhere cannot reach the API through a DNS name rebound to 127.0.0.1.

Writes (``POST``) are refused with 403 when the request's ``Origin`` is another site's, and
the cancel endpoint takes a JSON body only, which a cross-site form cannot send without a
preflight this server never grants.

Every answer carries a Content-Security-Policy that allows scripts and styles from this
server's own files only (no inline script, no ``eval``), ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "SECURITY_HEADERS",
    "TOKEN_ENV",
    "Guard",
    "Identity",
    "fingerprint",
    "is_loopback",
    "resolve_token",
]

TOKEN_ENV: Final = "PENGUIFLOW_WEB_TOKEN"
"""The environment variable read when no token is given."""
COOKIE: Final = "penguiflow_web"
"""The cookie that carries the browser's proof of the token."""
PROBES: Final = frozenset({"/metrics", "/healthz"})
"""Paths open without a token unless ``protect_probes``."""

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
"""Added to every answer."""

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})
_COOKIE_LABEL: Final = b"penguiflow-web-cookie"


def resolve_token(token: str | None) -> str | None:
    """The token to require: ``token``, else ``$PENGUIFLOW_WEB_TOKEN``, else None.

    Raises:
        ValueError: the token is empty or has characters a header cannot carry.
    """
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        return None
    if not isinstance(token, str) or not token or not token.isprintable() or " " in token:
        raise ValueError(
            f"the web token (token=... or ${TOKEN_ENV}) must be a non-empty string of "
            "printable characters without spaces"
        )
    return token


def fingerprint(token: str) -> str:
    """Name a token in logs without revealing it: ``sha256:`` and 12 hex digits of its hash."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback one; "" (all) is not."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request, for the log of a write: the token's fingerprint and how it came."""

    token: str
    """``fingerprint(token)``, or ``none`` when no token is set."""
    via: str
    """``bearer``, ``cookie`` or ``open`` (no token set)."""


@final
class Guard:
    """ASGI middleware: checks host, token and origin; adds the security headers.

    It puts the request's ``Identity`` in ``scope["state"]["identity"]``.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, protect_probes: bool) -> None:
        self.app = app
        self.token = token
        self.protect_probes = protect_probes
        self.cookie_value = (
            hmac.new(token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest() if token else ""
        )
        self.identity = fingerprint(token) if token else "none"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401/403/400 itself, or pass the request on with headers added."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        denial, identity = self._check(scope)
        if denial is not None:
            await denial(send)
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> tuple[_Denial | None, Identity | None]:
        path: str = scope["path"]
        headers = _headers(scope)
        open_probe = path in PROBES and not self.protect_probes
        if self.token is None:
            if not open_probe and not is_loopback(_hostname(headers.get("host", ""))):
                return _Denial(400, "this page answers to a loopback host name only"), None
            identity = Identity("none", "open")
        elif open_probe:
            identity = Identity(self.identity, "open")
        else:
            via = self._authenticated(headers)
            if via is None:
                return self._login(scope, path), None
            identity = Identity(self.identity, via)
        if scope["method"] not in ("GET", "HEAD") and not _same_origin(scope, headers):
            return _Denial(403, "cross-site request refused"), None
        return None, identity

    def _authenticated(self, headers: dict[str, str]) -> str | None:
        """How the request proved it holds the token (``bearer``, ``cookie``), or None."""
        assert self.token is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            return "bearer"
        # Read by hand: other sites' cookies on this host may be malformed, and
        # http.cookies would then refuse the whole header, ours with it.
        for pair in headers.get("cookie", "").split(";"):
            name, _, value = pair.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.cookie_value.encode()):
                return "cookie"
        return None

    def _login(self, scope: Scope, path: str) -> _Denial:
        """The page opened with the right ``?token=``: set the cookie and redirect, else 401."""
        assert self.token is not None
        if path == "/" and scope["method"] == "GET":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [""])[0]
            if given and hmac.compare_digest(given.encode(), self.token.encode()):
                secure = "; Secure" if scope.get("scheme") == "https" else ""
                cookie = f"{COOKIE}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict{secure}"
                return _Denial(303, "", ((b"location", b"/"), (b"set-cookie", cookie.encode())))
        return _Denial(
            401,
            "a token is needed: send 'Authorization: Bearer <token>', "
            "or open /?token=<token> once in the browser",
            ((b"www-authenticate", b'Bearer realm="penguiflow"'),),
        )


@dataclass(frozen=True, slots=True)
class _Denial:
    """An answer the guard gives itself: a JSON error (or an empty redirect)."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def __call__(self, send: Send) -> None:
        body = json.dumps({"error": self.message}).encode() if self.message else b""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _with_headers(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sender


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def _hostname(host: str) -> str:
    """The name in a Host header, without its port (``[::1]:80`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _same_origin(scope: Scope, headers: dict[str, str]) -> bool:
    """False when the request says it comes from a page of another origin."""
    origin = headers.get("origin")
    if origin is None:
        return headers.get("sec-fetch-site") in (None, "same-origin", "none")
    scheme = scope.get("scheme", "http")
    return origin == f"{scheme}://{headers.get('host', '')}"
