"""``MODULE:ATTR``: how every command that takes a flow finds it.

``MODULE`` is a dotted module name (imported as usual, from ``sys.path``; the command puts the
current directory first) or the path of a ``.py`` file; ``ATTR`` names a flow, or a factory
called without arguments that returns a flow, ``(flow, registry)`` or
``(flow, registry, types)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .._runtime.flow import PenguiFlow
from ..registry import ModelRegistry
from ._errors import TargetError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from pydantic import BaseModel

__all__ = ["Target", "describe_error", "load_function", "load_target"]


class Target(NamedTuple):
    """What ``MODULE:ATTR`` gave: ``flow, registry, types``."""

    flow: PenguiFlow
    """The flow, not running."""
    registry: ModelRegistry | None
    """The registry to run it with, if the target gave one."""
    types: list[type[BaseModel]]
    """Payload models to accept besides the registry's (``RedisBackend(types=)``)."""


def load_target(target: str) -> Target:
    """Import ``MODULE:ATTR`` (or ``PATH.py:ATTR``): a flow, or a zero-argument factory.

    The factory returns a flow, or ``(flow, registry)``, or ``(flow, registry, types)`` with
    ``types`` the payload models to accept besides the registry's (``RedisBackend(types=)``).

    Raises:
        TargetError: (a ``ValueError``) ``target`` is not ``MODULE:ATTR``, the module does not
            import, has no such attribute, the factory raised, or what it gives is not a flow.
    """
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise TargetError(f"expected MODULE:ATTR or PATH.py:ATTR, got {target!r}")
    module = _import(module_name)
    try:
        found: Any = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"{module_name} has no attribute {attr!r}") from None
    if callable(found) and not isinstance(found, PenguiFlow):
        try:
            found = found()
        except Exception as exc:
            raise TargetError(f"{target}: calling {attr}() raised {describe_error(exc)}") from exc
    return _unpack(target, found)


def load_function(spec: str, *, option: str) -> Callable[..., Any]:
    """Import ``MODULE:ATTR`` (or ``PATH.py:ATTR``) naming a callable, for ``option``.

    Raises:
        TargetError: ``spec`` is malformed, does not import, or names no callable.
    """
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise TargetError(f"{option}: expected MODULE:ATTR or PATH.py:ATTR, got {spec!r}")
    found = getattr(_import(module_name), attr, None)
    if not callable(found):
        raise TargetError(f"{option}: {module_name} has no function {attr!r}")
    return cast("Callable[..., Any]", found)


def _unpack(target: str, found: Any) -> Target:
    parts = found if isinstance(found, tuple) else (found,)
    if 1 <= len(parts) <= 3:
        flow, registry, types = (*parts, None, None)[:3]
        if (
            isinstance(flow, PenguiFlow)
            and (registry is None or isinstance(registry, ModelRegistry))
            and (types is None or isinstance(types, (list, tuple)))
        ):
            return Target(flow, registry, list(types or ()))
    raise TargetError(
        f"{target} gives {type(found).__name__}, not a flow, (flow, registry) or "
        "(flow, registry, types)"
    )


def _import(name: str) -> ModuleType:
    """Import a module by name, or a ``.py`` file by path (under a private module name).

    Raises:
        TargetError: the file is missing, or importing raised anything.
    """
    if not name.endswith(".py"):
        try:
            return importlib.import_module(name)
        except Exception as exc:
            raise TargetError(f"cannot import {name}: {describe_error(exc)}") from exc
    path = Path(name).resolve()
    if not path.is_file():
        raise TargetError(f"cannot import {name}: no such file")
    module_name = f"_penguiflow_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise TargetError(f"cannot import {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic resolves the module's annotations by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise TargetError(f"cannot import {name}: {describe_error(exc)}") from exc
    return module


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line (a SyntaxError says where, as its ``str`` does)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
