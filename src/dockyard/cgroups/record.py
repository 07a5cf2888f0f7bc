"""A base for the small immutable value classes of ``resources`` and ``devices``.

They would be frozen dataclasses anywhere else, but ``dockyard-runtime`` loads them on every
``create`` (``set`` always gets device rules), and importing ``dataclasses`` pulls in
``inspect``, ``ast``, ``re`` and ``enum``: more than the rest of the command's start-up. A
subclass lists its fields in ``__slots__``, in constructor order, and its ``__init__`` hands
the values to ``_init``; the base gives what ``@dataclass(frozen=True)`` gave: field-wise
``==``, a hash, a ``Name(field=value, ...)`` repr, no assignment after construction, and
copy/pickle support.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the runtime CLI must start fast
if TYPE_CHECKING:
    from typing import Any


class Record:
    __slots__ = ()

    def _init(self, *values: object) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[type[Record], tuple[Any, ...]]:
        return (type(self), self._values())  # copy and pickle: __init__ takes the fields in order
