"""The engine behind ``penguiflow.core``: private, one concept a module.

How one message travels: ``floe`` -> ``worker`` -> ``enqueue`` (or ``routing``) -> ``floe``;
how one result reaches its caller: a Rookery floe -> ``results`` (sorted into its caller's inbox
as it lands) -> ``flow.fetch``.

- ``floe``: ``Floe``, a bounded FIFO edge that owns its state (deque, limit, waiters served in
  arrival order), and the ``ReadySignal`` a context reading several floes waits on. The seam
  where another transport plugs in.
- ``traces``: per-trace records and the pending-count invariant, stated once; cancel flags;
  capacity waiters.
- ``enqueue``: the one place that pushes and counts (``try_put``, its waiting twin ``put``,
  ``put_nowait``); Rookery tags and bus mirroring.
- ``worker``: one loop per worker: take, admit, call the node inline, route, release. Whether
  a node runs inline is decided once per run from its policy.
- ``attempt``: the general path: attempts, timeouts, validation, retries with backoff, the
  breaker, the error boundary.
- ``routing``: controller hops, final answers, delivery to the Rookery.
- ``events``: ``EventSink`` (who observes, delivery to log, store and middlewares) and the
  per-node ``EventTemplate`` that builds every event.
- ``lifecycle``: releasing items and what a trace's end means (journal, cancel finish).
- ``cancel``: ``Canceller``, cancelling one trace while others carry on.
- ``results``: delivery to callers once trace-scoped fetching is on: per-trace inboxes,
  roundtrip locks, bounds, callers that go away.
- ``inbox``: ``Inbox``, one subscribed trace's results and the fetches waiting for them.
- ``context``: the per-node handle for emit / fetch / streaming.
- ``graph``: wiring adjacencies into nodes and floes; the cycle check.
- ``breaker``, ``nodes``: a node's circuit breaker, last error and restarts.
- ``subflow``: ``call_playbook``.
- ``journal``: traces' inputs and ends for crash recovery; idempotency keys.
- ``health``: the ``FlowHealth`` snapshot.
- ``shutdown``: draining what ``stop()`` leaves queued.
- ``tasks``: ``TaskOwner``, the owner of every task a flow starts.
- ``protocols``: ``Runtime``, what engine pieces may ask of their flow.
- ``constants``, ``endpoints``: texts and defaults the contract fixes; OpenSea and Rookery.
- ``flow``: ``PenguiFlow``, which builds the collaborators, hands each only what it needs,
  and delegates. Nothing it builds imports it back (``tests/test_architecture.py``).

Event kinds, their levels and ``FlowEvent`` live outside, in ``penguiflow._events``, where
both the engine and the public modules import them.
"""
