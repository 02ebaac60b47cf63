"""Errors for bad input. Every one names the offending field as it appears in a file."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class FieldError(ValueError):
    """Invalid input; ``field`` names the offending field, array or option."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def real_array(value: Any, field: str, error: type[FieldError] = FieldError) -> NDArray[np.float64]:
    """``value`` as a float64 array, if it holds real numbers (integers or floats): booleans,
    complex numbers, strings, dates, ``None`` and other objects are refused by name (numpy would
    silently read ``True`` as 1, drop an imaginary part, or parse ``"1"``)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise error(field, f"must be numeric ({exc})") from None
    if arr.dtype.kind not in "iuf":
        if arr.size or arr.dtype.kind not in "OUS":
            raise error(field, f"must hold real numbers, got {arr.dtype} values")
    return np.asarray(arr, dtype=np.float64)


def check_bounds(
    owner: object, names: tuple[str, ...], low: float, strict: bool = False, optional: bool = False
) -> None:
    """FieldError naming the first field of ``owner`` in ``names`` whose value is below ``low``
    (``strict``: not above it); ``None`` passes when ``optional``. For configs'
    ``__post_init__``: ``check_bounds(self, ("epochs", "batch_size"), 1)``."""
    for name in names:
        value = getattr(owner, name)
        if value is None and optional:
            continue
        if value is None or value < low or (strict and value == low):
            bound = f"{'>' if strict else '>='} {low:g}{' or null' if optional else ''}"
            raise FieldError(name, f"must be {bound}, got {value}")
