"""Named fields of a flat vector: how an agent's Box action or observation is laid out.

A `Layout` is an ordered list of fields, each with a shape; `layout.size` is the Box dimension and
`layout.view(vector, name)` reads one field back in its shape (works with a leading batch axis).
The docs of every space (`Layout.describe()`) list the fields, their shapes and when they apply.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    shape: tuple[int, ...]
    doc: str
    start: int
    size: int
    stop: int


class Layout:
    def __init__(self):
        self.fields: dict[str, Field] = {}
        self.size = 0

    def add(self, name: str, shape: tuple[int, ...] | int, doc: str) -> "Layout":
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(shape))
        field = Field(name, shape, doc, self.size, size, self.size + size)
        self.fields[name] = field
        self.size = field.stop
        return self

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def view(self, vector: np.ndarray, name: str) -> np.ndarray:
        """Field `name` of `vector` (..., size) as an array of shape (..., *field.shape)."""
        f = self.fields[name]
        return vector[..., f.start : f.stop].reshape(vector.shape[:-1] + f.shape)

    def write(self, vector: np.ndarray, name: str, value) -> None:
        """Set field `name` of `vector` (..., size); `value` broadcasts to (..., *field.shape)."""
        f = self.fields[name]
        lead = vector.shape[:-1]
        if np.isscalar(value):
            vector[..., f.start : f.stop] = value
            return
        value = np.asarray(value)
        if value.shape != lead + f.shape:
            value = np.broadcast_to(value, lead + f.shape)
        vector[..., f.start : f.stop] = value.reshape(lead + (f.size,))

    def describe(self) -> str:
        return "\n".join(f"{f.name} {f.shape} [{f.start}:{f.stop}]: {f.doc}" for f in self.fields.values())
