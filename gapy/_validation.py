"""Checks of scalar parameters: one place for their rules and messages.

Wrong types raise ``TypeError`` (a string where a number belongs, ``None`` where it is
not allowed); wrong values raise ``ValueError`` (NaN, infinity, out of range). Every
message names the parameter, the allowed range and the value given.
"""

import math
from numbers import Integral, Real
from typing import Any, Optional, Sequence


def _describe(low, high, low_inclusive: bool, kind: str) -> str:
    if high is None and low == 0 and not low_inclusive:
        return f"a positive {kind}"
    if high is None and low == 0 and low_inclusive:
        return f"a non-negative {kind}"
    if high is None and low == 1 and low_inclusive and kind == "integer":
        return "a positive integer"
    article = "an" if kind[0] in "aeiou" else "a"
    if low is None and high is None:
        return f"a finite {kind}"
    if high is None:
        return f"{article} {kind} {'>=' if low_inclusive else '>'} {low}"
    if low is None:
        return f"{article} {kind} <= {high}"
    return f"{article} {kind} between {low} and {high}"


def check_number(name: str, value: Any, low: Optional[float] = None, high: Optional[float] = None, *,
                 low_inclusive: bool = False, allow_none: bool = False) -> Optional[float]:
    """A finite real number in ``(low, high]`` (``[low, high]`` with ``low_inclusive``).

    Returns
    -------
    float or None
        ``None`` only with ``allow_none``.
    """
    if value is None and allow_none:
        return None
    expected = _describe(low, high, low_inclusive, "number") + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_integer(name: str, value: Any, low: Optional[int] = 1, high: Optional[int] = None, *,
                  allow_none: bool = False) -> Optional[int]:
    """An integer in ``[low, high]``; a float with an integer value (``4.0``) is accepted.

    Returns
    -------
    int or None
        ``None`` only with ``allow_none``.
    """
    if value is None and allow_none:
        return None
    expected = _describe(low, high, True, "integer") + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not isinstance(value, Integral) and not (math.isfinite(value) and float(value).is_integer()):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
