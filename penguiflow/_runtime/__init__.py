"""The engine behind ``penguiflow.core``: private, one concept a module.

- ``constants``: texts, event names and defaults the contract fixes.
- ``endpoints``: the OpenSea / Rookery endpoints.
- ``floe``: bounded FIFO edges and the ready-signal a multi-floe consumer waits on.
- ``graph``: wiring adjacencies into nodes and floes; the cycle check.
- ``context``: the per-node handle for emit / fetch / streaming.
- ``traces``: per-trace accounting, cancel flags and capacity waiters.
- ``enqueue``: every put on a floe, with trace counting, Rookery tags and bus mirroring.
- ``events``: building and dispatching ``FlowEvent``s to logs, store and middlewares.
- ``execution``: one message through one node: attempts, timeouts, retries, breaker, errors.
- ``routing``: controller hops, final answers, delivery to the Rookery.
- ``worker``: the per-node loop, its inline ordinary path and trace-scoped cancellation.
- ``breaker``, ``nodes``: per-node circuit breaker state, last error and restarts.
- ``cancel``: cancelling one trace while others carry on.
- ``roundtrip``: trace-scoped emit/fetch, the dispatcher and roundtrip locks.
- ``subflow``: ``call_playbook``.
- ``journal``: traces' inputs and ends for crash recovery; idempotency keys.
- ``health``: the ``FlowHealth`` snapshot and the leak-check counts.
- ``shutdown``: draining what ``stop()`` leaves queued.
- ``tasks``: the owner of every task a flow starts.
- ``flow``: ``PenguiFlow``, which composes the above.
"""
