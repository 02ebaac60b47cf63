"""Checks of what the serving API is given, so that a bad argument is refused with a
:class:`~ttamer.errors.FieldError` naming it, never a hang or an error from deep inside: rates,
batch sizes and counts, and the requests themselves (no rows, more rows asked for than given,
NaN or infinite values, a shape the model's first stage cannot take)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ttamer.errors import FieldError


def check_rate(rate: Any, field: str = "rate") -> float:
    """A finite arrival rate > 0 (requests per second)."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise FieldError(field, f"must be a number of requests per second, got {rate!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise FieldError(field, f"must be a finite rate > 0 requests per second, got {rate!r}")
    return value


def check_positive_int(value: Any, field: str) -> int:
    """An integer >= 1 (booleans and fractions refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FieldError(field, f"must be an integer >= 1, got {value!r}")
    return int(value)


def check_wait(value: Any, field: str = "max_wait_s") -> float | None:
    """None, or a finite number of seconds >= 0."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FieldError(field, f"must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise FieldError(field, f"must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _arrays(requests: Any) -> Iterator[Any]:
    """The float-capable tensors and arrays inside a batch of requests (a tensor, an array, or a
    tuple or dict of them; dataclasses such as token batches are looked into)."""
    if isinstance(requests, (torch.Tensor, np.ndarray)):
        yield requests
    elif isinstance(requests, tuple):
        for part in requests:
            yield from _arrays(part)
    elif isinstance(requests, dict):
        for part in requests.values():
            yield from _arrays(part)
    elif dataclasses.is_dataclass(requests) and not isinstance(requests, type):
        for f in dataclasses.fields(requests):
            yield from _arrays(getattr(requests, f.name))


def request_rows(requests: Any) -> int | None:
    """The number of requests in a batch: rows of a tensor or array, items of a list of raw
    requests, ``len`` of a batch object (a token batch), the first of a tuple's parts; None for
    anything else."""
    if isinstance(requests, (torch.Tensor, np.ndarray)):
        return int(requests.shape[0]) if requests.ndim else None
    if isinstance(requests, tuple):
        return request_rows(requests[0]) if requests else None
    if dataclasses.is_dataclass(requests) and not hasattr(requests, "__len__"):
        first = next((a for a in _arrays(requests) if a.ndim), None)
        return None if first is None else int(first.shape[0])
    if isinstance(requests, list) or (
        hasattr(requests, "__len__") and not isinstance(requests, (str, bytes, dict))
    ):
        try:
            return len(requests)
        except TypeError:
            return None
    return None


def check_requests(requests: Any, n: int | None = None) -> int:
    """The number of requests to serve: ``n`` (checked against the rows given) or every row.
    Refuses an empty batch and float requests holding NaN or infinities (naming the first)."""
    rows = request_rows(requests)
    if rows is None:
        kind = type(requests).__name__
        raise FieldError("requests", f"must be a batch (a tensor or array, or a tuple of them), got {kind}")
    if rows == 0:
        raise FieldError("requests", "no request to serve (0 rows)")
    if n is not None:
        n = check_positive_int(n, "n")
        if n > rows:
            raise FieldError("n", f"asks for {n} requests but only {rows} are given")
    for arr in _arrays(requests):
        values = arr if isinstance(arr, torch.Tensor) else torch.as_tensor(np.asarray(arr))
        if values.is_floating_point() and values.numel():
            finite = torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
            if not bool(finite.all()):
                bad = int(torch.nonzero(~finite)[0, 0])
                raise FieldError("requests", f"request {bad} holds NaN or infinite values")
    return rows if n is None else n
