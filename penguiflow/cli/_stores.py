"""Store URLs: ``open_store(url)`` builds the store a URL names, and ``opened`` opens it.

- ``sqlite:///PATH``: a ``SQLiteStore`` on the file ``PATH``, relative to the current directory
  (``sqlite:///state.db``), or absolute with a fourth slash (``sqlite:////var/lib/pf.db``).
- ``postgresql://USER@HOST:PORT/DATABASE`` (or ``postgres://``): a ``PostgresStore``; any
  ``asyncpg`` DSN, plus one parameter of ours, ``?schema=NAME``, the schema to keep the tables
  in (by default the server's search path decides).

The URL is shown with its password hidden wherever the command prints it.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from typing import TYPE_CHECKING

from ._errors import CommandError, StoreURLError
from ._target import describe_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..stores._base import StoreBase

__all__ = ["describe_url", "open_store", "opened"]

_EXPECTED = "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
_INSTALL = "pip install 'penguiflow-runtime[{extra}]'"


def open_store(url: str, *, must_exist: bool = False) -> StoreBase:
    """Build (not start) the store ``url`` names.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql://...`` (see the module docstring).
        must_exist: Refuse a SQLite file that does not exist (for commands that only read;
            opening would otherwise create an empty store).

    Raises:
        StoreURLError: any other scheme, a malformed URL, a missing SQLite file when
            ``must_exist``, or the store's driver is not installed.
    """
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _sqlite(url, rest, must_exist=must_exist)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise StoreURLError(f"unsupported store URL {describe_url(url)!r}: {_EXPECTED}")


def describe_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


@contextlib.asynccontextmanager
async def opened(url: str, *, must_exist: bool = False) -> AsyncIterator[StoreBase]:
    """Open the store ``url`` names for the block, and close it after.

    Raises:
        StoreURLError: see ``open_store``.
        CommandError: the store cannot be opened (server away, not a penguiflow store...).
    """
    store = open_store(url, must_exist=must_exist)
    try:
        await store.start()
    except Exception as exc:
        raise CommandError(
            f"cannot open the store {describe_url(url)}: {describe_error(exc)}"
        ) from exc
    try:
        yield store
    finally:
        await store.close()


def _sqlite(url: str, rest: str, *, must_exist: bool) -> StoreBase:
    host, slash, path = rest.partition("/")
    if host or not slash or not path or "?" in path or "#" in path:
        raise StoreURLError(
            f"malformed SQLite URL {url!r}: expected sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    if must_exist and not os.path.isfile(path):
        raise StoreURLError(f"store {url}: no such file {path!r}")
    try:
        from ..stores.sqlite import SQLiteStore
    except ImportError as exc:
        raise StoreURLError(
            f"store {url}: the SQLite store needs aiosqlite: {_INSTALL.format(extra='sqlite')}"
        ) from exc
    return SQLiteStore(path)


def _postgres(url: str) -> StoreBase:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1 or (schemas and not schemas[0]):
        raise StoreURLError(f"store {describe_url(url)}: give ?schema=NAME once, with a name")
    dsn = urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"]))
    )
    try:
        from ..stores.postgres import PostgresStore
    except ImportError as exc:
        raise StoreURLError(
            f"store {describe_url(url)}: the PostgreSQL store needs asyncpg: "
            + _INSTALL.format(extra="postgres")
        ) from exc
    return PostgresStore(dsn, schema=schemas[0] if schemas else None)
