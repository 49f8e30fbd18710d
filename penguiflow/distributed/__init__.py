"""Scale-out: the same flow across processes and hosts, on Redis Streams.

Workers serve a flow's nodes (``Worker``, ``serve``, or ``penguiflow worker``); callers emit
and fetch through a ``RemoteFlow``. A ``Worker`` reports its ``health()``;
``RedisBackend.overview()`` reads the whole flow's state from Redis, from any process.
redis-py is an optional dependency (``pip install 'penguiflow-runtime[redis]'``), imported when a
backend first connects.
"""

from .backend import DeadLetter as DeadLetter
from .backend import RedisBackend as RedisBackend
from .caller import RESULTS_DEAD_LETTERS as RESULTS_DEAD_LETTERS
from .caller import RemoteFlow as RemoteFlow
from .errors import BackendUnavailable as BackendUnavailable
from .errors import EnvelopeError as EnvelopeError
from .errors import EnvelopeTooLarge as EnvelopeTooLarge
from .health import ConsumerStats as ConsumerStats
from .health import FlowOverview as FlowOverview
from .health import NodeLoad as NodeLoad
from .health import RedisLink as RedisLink
from .health import StreamStats as StreamStats
from .health import WorkerHealth as WorkerHealth
from .health import WorkerInfo as WorkerInfo
from .worker import Worker as Worker
from .worker import serve as serve

__all__ = [
    "RESULTS_DEAD_LETTERS",
    "BackendUnavailable",
    "ConsumerStats",
    "DeadLetter",
    "EnvelopeError",
    "EnvelopeTooLarge",
    "FlowOverview",
    "NodeLoad",
    "RedisBackend",
    "RedisLink",
    "RemoteFlow",
    "StreamStats",
    "Worker",
    "WorkerHealth",
    "WorkerInfo",
    "serve",
]
