"""Keyword values checked where they enter: a value of the wrong type raises ``TypeError``,
one out of range ``ValueError``, and either names the keyword (the README's promise).

The Rust extension checks ranges and meaning (``ctstream._native`` raises ``ValueError``
naming the option); what it cannot name is a Python integer that does not fit the Rust
type (a negative ``seed``, a ``batch_size`` of 2**70): PyO3 raises ``OverflowError`` or
``TypeError`` for those and only notes the argument ("while processing 'seed'").
:func:`names_keywords` turns them into ``ValueError`` / ``TypeError`` naming it, and the
converters below name the keyword for what Python converts before the call.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import os
import re
from typing import Any, Callable, List, Optional, Tuple, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_PROCESSING = re.compile(r"while processing '([A-Za-z_][A-Za-z0-9_]*)'")


def _argument(e: BaseException) -> Optional[str]:
    """The argument PyO3 was extracting when it raised ``e`` (its note), or None."""
    for note in getattr(e, "__notes__", ()):
        m = _PROCESSING.search(str(note))
        if m:
            return m.group(1)
    return None


def names_keywords(fn: F) -> F:
    """Re-raises the extension's argument-conversion errors naming the keyword:
    ``OverflowError`` (an integer the option's type cannot hold: negative, or too large)
    as ``ValueError``, ``TypeError`` as ``TypeError``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (OverflowError, TypeError) as e:
            name = _argument(e)
            if name is None or str(e).startswith(f"{name}:"):
                raise
            value = f" {kwargs[name]!r}" if name in kwargs else ""
            if isinstance(e, OverflowError):
                raise ValueError(f"{name}{value}: out of range for this option ({e})") from e
            raise TypeError(f"{name}{value}: the wrong type for this option ({e})") from e

    return wrapper  # type: ignore[return-value]


def integer(name: str, v: Any) -> int:
    """``v`` as an int (a Python or numpy integer, not a float or a bool)."""
    if isinstance(v, bool):
        raise TypeError(f"{name}: {v!r} is a bool, not an integer")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name}: {v!r} is not an integer") from None


def number(name: str, v: Any) -> float:
    """``v`` as a float (any real number; NaN and infinities pass, for the library's
    range check to name)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: {v!r} is not a number")
    try:
        return float(v)
    except OverflowError:
        return math.copysign(math.inf, v)  # an int beyond float's range: infinitely far out


def _sequence(name: str, v: Any, n: Optional[int]) -> List[Any]:
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(f"{name}: {v!r} is not a sequence")
    items = list(v)
    if n is not None and len(items) != n:
        raise ValueError(f"{name}: {v!r} has {len(items)} values, give {n}")
    return items


def integers(name: str, v: Any, n: Optional[int] = None) -> Tuple[int, ...]:
    """``v`` as a tuple of ``n`` ints."""
    return tuple(integer(name, x) for x in _sequence(name, v, n))


def numbers_(name: str, v: Any, n: Optional[int] = None) -> Tuple[float, ...]:
    """``v`` as a tuple of ``n`` floats."""
    return tuple(number(name, x) for x in _sequence(name, v, n))


def strings(name: str, v: Any) -> List[str]:
    """``v`` as a list of str (one str is a list of one)."""
    if isinstance(v, str):
        return [v]
    items = _sequence(name, v, None)
    for x in items:
        if not isinstance(x, str):
            raise TypeError(f"{name}: {x!r} is not a str")
    return items


def path(name: str, v: Any) -> str:
    """``v`` (a str or an os.PathLike) as a str."""
    try:
        return os.fspath(v)
    except TypeError:
        raise TypeError(f"{name}: {v!r} is not a path (str or os.PathLike)") from None


def paths(name: str, v: Any) -> List[str]:
    """``v`` (one path or a sequence of them) as a list of str."""
    if isinstance(v, (str, os.PathLike)):
        return [path(name, v)]
    return [path(name, x) for x in _sequence(name, v, None)]


def optional(convert: Callable[..., Any], name: str, v: Any, *rest: Any) -> Any:
    """``convert(name, v, *rest)``, or None for None."""
    return None if v is None else convert(name, v, *rest)
