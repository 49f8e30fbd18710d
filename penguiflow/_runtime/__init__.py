"""The engine behind ``penguiflow.core``: private, one concept a module.

- ``constants``: texts, event names and defaults the contract fixes.
- ``endpoints``: the OpenSea / Rookery endpoints.
- ``floe``: bounded FIFO edges and the ready-signal a multi-floe consumer waits on.
- ``graph``: wiring adjacencies into nodes, floes and contexts; the cycle check.
- ``context``: the per-node handle for emit / fetch / streaming.
- ``traces``: per-trace accounting, cancel flags and capacity waiters.
- ``events``: building and dispatching ``FlowEvent``s to logs, store and middlewares.
- ``execution``: one message through one node: timeout, retry, failure, routing.
- ``worker``: the per-node loop and its trace-scoped cancellation.
- ``roundtrip``: trace-scoped emit/fetch, the dispatcher and roundtrip locks.
- ``subflow``: ``call_playbook``.
- ``tasks``: the owner of every task a flow starts.
- ``flow``: ``PenguiFlow``, which composes the above.
"""
