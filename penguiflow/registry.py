"""Per-node pydantic models, kept as ``TypeAdapter``s for validation at node boundaries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

__all__ = ["ModelRegistry"]


class ModelRegistry:
    """Maps a node name to its input and output models."""

    def __init__(self) -> None:
        self._models: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {}
        self._adapters: dict[str, tuple[TypeAdapter[Any], TypeAdapter[Any]]] = {}

    def register(
        self, node_name: str, in_model: type[BaseModel], out_model: type[BaseModel]
    ) -> None:
        """Register the models a node consumes and produces.

        Raises:
            ValueError: ``node_name`` is registered already.
            TypeError: a model is not a ``pydantic.BaseModel`` subclass.
        """
        if node_name in self._models:
            raise ValueError(f"Node '{node_name}' already registered")
        for model in (in_model, out_model):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError("Models must inherit from pydantic.BaseModel")
        self._models[node_name] = (in_model, out_model)
        self._adapters[node_name] = (TypeAdapter(in_model), TypeAdapter(out_model))

    def has(self, node_name: str) -> bool:
        """Return whether ``node_name`` is registered."""
        return node_name in self._models

    def adapters(self, node_name: str) -> tuple[TypeAdapter[Any], TypeAdapter[Any]]:
        """Return the (input, output) adapters of a node.

        Raises:
            KeyError: the node is not registered.
        """
        try:
            return self._adapters[node_name]
        except KeyError:
            raise KeyError(f"Node '{node_name}' not registered") from None

    def models(self, node_name: str) -> tuple[type[BaseModel], type[BaseModel]]:
        """Return the (input, output) models of a node.

        Raises:
            KeyError: the node is not registered.
        """
        try:
            return self._models[node_name]
        except KeyError:
            raise KeyError(f"Node '{node_name}' not registered") from None
