"""Opening Redis: the optional import, timeouts that suit blocking reads, hidden passwords."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import BackendUnavailable

__all__ = ["check_reachable", "open_client", "redact", "require_redis", "scrub"]

MISSING_REDIS = (
    "penguiflow.distributed needs redis-py; install the extra: "
    "pip install 'penguiflow-runtime[redis]'"
)


def require_redis() -> Any:
    """Import ``redis.asyncio`` (an optional dependency).

    Returns ``Any``: the module is typed by redis-py, which this package does not require.

    Raises:
        ImportError: redis-py is not installed; the message says how to install it.
    """
    try:
        return importlib.import_module("redis.asyncio")
    except ImportError as exc:
        raise ImportError(MISSING_REDIS) from exc


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs, errors, health)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (as written, and percent-decoded) replaced by ``***``.

    For error texts a health report or a log shows: a server's or a library's message may
    quote the URL or the credentials it was given.
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    if not password:
        return text
    for secret in {password, unquote(password)}:
        text = text.replace(secret, "***")
    return text


def open_client(url: str, *, block_ms: int) -> Any:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``) with explicit timeouts.

    Design note: redis-py's default socket timeout (5 s) would cut a longer blocking read and
    silently re-send it; reads here block at most ``block_ms``, and the socket timeout is at
    least three times that.

    Raises:
        ValueError: the URL is not a Redis URL (named without its password).
    """
    redis = require_redis()
    try:
        return redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=max(3 * block_ms / 1000.0, 5.0),
            socket_connect_timeout=5.0,
        )
    except ValueError as exc:
        raise ValueError(f"not a Redis URL: {redact(url)} ({exc})") from None


async def check_reachable(client: Any, url: str) -> None:
    """Ping the server once.

    Raises:
        BackendUnavailable: it did not answer (or refused the credentials).
    """
    redis = require_redis()
    try:
        await client.ping()
    except (redis.RedisError, OSError) as exc:
        raise BackendUnavailable(redact(url), _redacted(exc, url)) from None


def _redacted(exc: BaseException, url: str) -> BaseException:
    """``exc`` or, when its text holds the URL's password, a copy that does not."""
    password = urlsplit(url).password
    text = str(exc)
    if password and password in text:
        return type(exc)(text.replace(password, "***"))
    return exc
