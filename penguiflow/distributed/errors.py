"""The exceptions of the Redis backend.

::

    ValueError
    ├── EnvelopeError          a stream entry cannot be decoded (dead-lettered, never run)
    └── EnvelopeTooLarge       an envelope is over the configured limit (refused at emit)
    ConnectionError
    └── BackendUnavailable     Redis cannot be reached (named by its URL, password hidden)
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "EnvelopeError", "EnvelopeTooLarge"]


class EnvelopeError(ValueError):
    """A stream entry is not an envelope this flow can decode.

    Attributes:
        reason: What is wrong with it.
        where: The stream and entry id (or the caller's emit) it came from.
    """

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.where = where


class EnvelopeTooLarge(ValueError):
    """An envelope is larger than ``RedisBackend(max_envelope_bytes=...)`` allows.

    Attributes:
        size: The envelope's size in bytes.
        limit: The configured limit.
        where: Where it was found (the emit, or a stream entry).
    """

    def __init__(self, size: int, limit: int, where: str) -> None:
        super().__init__(
            f"{where}: envelope of {size} bytes is over the limit of {limit} bytes "
            "(RedisBackend(max_envelope_bytes=...))"
        )
        self.size = size
        self.limit = limit
        self.where = where


class BackendUnavailable(ConnectionError):
    """Redis at ``url`` (password hidden) did not answer.

    Attributes:
        url: The server's URL without its password.
    """

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach Redis at {url}: {type(cause).__name__}: {cause}")
        self.url = url
