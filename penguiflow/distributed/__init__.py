"""Scale-out: the same flow across processes and hosts, on Redis Streams.

Workers serve a flow's nodes (``serve``, or ``penguiflow worker``); callers emit and fetch
through a ``RemoteFlow``. redis-py is an optional dependency (``pip install
'penguiflow[redis]'``), imported when a backend first connects.
"""

from .backend import DeadLetter as DeadLetter
from .backend import RedisBackend as RedisBackend
from .caller import RESULTS_DEAD_LETTERS as RESULTS_DEAD_LETTERS
from .caller import RemoteFlow as RemoteFlow
from .errors import BackendUnavailable as BackendUnavailable
from .errors import EnvelopeError as EnvelopeError
from .errors import EnvelopeTooLarge as EnvelopeTooLarge
from .worker import serve as serve

__all__ = [
    "RESULTS_DEAD_LETTERS",
    "BackendUnavailable",
    "DeadLetter",
    "EnvelopeError",
    "EnvelopeTooLarge",
    "RedisBackend",
    "RemoteFlow",
    "serve",
]
