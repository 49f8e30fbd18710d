"""A live page and JSON API for a running flow, served by Starlette under uvicorn.

``create_app(flow)`` builds the ASGI application; ``serve_flow(flow)`` serves it with uvicorn
on the flow's own event loop and returns the listening ``WebServer``. The page (``/``) draws
the graph with each node's live figures, the flow's health, recent traces and a trace's
timeline; ``/api/...`` is the JSON behind it, ``/api/events`` streams node figures and health
(server-sent events), ``/metrics`` and ``/healthz`` serve Prometheus and probes.

Requires the ``web`` extra: ``pip install 'penguiflow-runtime[web]'``.
"""

from __future__ import annotations

try:
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"penguiflow.web needs {exc.name or 'its dependencies'}: "
        "pip install 'penguiflow-runtime[web]'"
    ) from exc

from ._app import DEFAULT_MAX_PAYLOAD_CHARS, TOKEN_ENV, create_app
from ._server import DEFAULT_PORT, WebServer, serve_flow

__all__ = [
    "DEFAULT_MAX_PAYLOAD_CHARS",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "WebServer",
    "create_app",
    "serve_flow",
]
