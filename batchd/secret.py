"""``Secret``: a value that never shows itself by accident.

``repr()``/``str()``/``format()`` give ``***``; only ``reveal()`` returns the value, and it is
called at the HTTP call site and nowhere else. Every secret created is remembered (in this
process only) so that the log redaction can scrub its exact value wherever it appears.
"""

from __future__ import annotations

import threading
from typing import Final

_MIN_SCRUB_LEN: Final = 6
_known: set[str] = set()
_lock = threading.Lock()


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value
        if len(value) >= _MIN_SCRUB_LEN:
            with _lock:
                _known.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def known_secret_values() -> frozenset[str]:
    """Every secret value created in this process (for value-based redaction)."""
    with _lock:
        return frozenset(_known)
