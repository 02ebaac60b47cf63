"""The registry of trace policies (README: traces): each policy module registers its class with
:func:`register_policy`, and the lists the rest of the package uses derive from what is
registered.

A registration carries the policy's name (its ``name`` attribute, checked), ``order`` (its place
in results tables and in the default lists), ``default`` (scored when no policy list is given)
and ``auto_candidate`` (one of the policies ``auto`` chooses among by default). Importing
:mod:`ttamer.policies` imports every module of the package (:func:`discover_policies`), so the
registry is complete as soon as the package is imported; a new policy module needs no list
edited.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ttamer.errors import FieldError
from ttamer.policies.base import TracePolicy


@dataclass(frozen=True)
class PolicyEntry:
    """One registered policy: ``cls`` builds it from its parameters (a frozen dataclass whose
    fields all have defaults); see the module docstring for the other fields."""

    name: str
    cls: type[Any]
    order: int
    default: bool
    auto_candidate: bool


_ENTRIES: dict[str, PolicyEntry] = {}
_DISCOVERED: list[bool] = []  # non-empty once every module of the package has been imported

P = TypeVar("P", bound=type[Any])


def register_policy(
    name: str, *, order: int, default: bool = True, auto_candidate: bool = False
) -> Callable[[P], P]:
    """Class decorator: register a trace policy class as ``name`` (which must equal the class's
    ``name`` attribute) at place ``order`` of the tables and default lists."""

    def decorate(cls: P) -> P:
        own = getattr(cls, "name", None)
        if own != name:
            raise ValueError(f"policy class {cls.__qualname__} is named {own!r}, registered as {name!r}")
        known = _ENTRIES.get(name)
        if known is not None and known.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"policy {name!r} registered twice ({known.cls} and {cls})")
        clash = [e.name for e in _ENTRIES.values() if e.order == order and e.name != name]
        if clash:
            raise ValueError(f"policy {name!r}: order {order} is already {clash[0]!r}'s")
        _ENTRIES[name] = PolicyEntry(name, cls, order, default, auto_candidate)
        return cls

    return decorate


def discover_policies() -> None:
    """Import every module of :mod:`ttamer.policies` (once), so that each registers its policies."""
    if _DISCOVERED:
        return
    import ttamer.policies as root

    for info in pkgutil.iter_modules(root.__path__, prefix="ttamer.policies."):
        importlib.import_module(info.name)
    _DISCOVERED.append(True)


def policy_entries() -> dict[str, PolicyEntry]:
    """Every registered policy by name, in table order."""
    discover_policies()
    return {e.name: e for e in sorted(_ENTRIES.values(), key=lambda e: e.order)}


def policy_classes() -> dict[str, type[TracePolicy]]:
    """Every registered policy's class by name, in table order."""
    return {name: e.cls for name, e in policy_entries().items()}


def default_trace_policies() -> tuple[str, ...]:
    """The policies scored on a trace when no list is given, in table order: every candidate
    of ``auto``, then the references ``static`` and ``oracle``, then ``auto``."""
    return tuple(name for name, e in policy_entries().items() if e.default)


def default_auto_candidates() -> tuple[str, ...]:
    """The policies ``auto`` chooses among by default (not the references, not itself)."""
    return tuple(name for name, e in policy_entries().items() if e.auto_candidate)


def make_policy(name: str, **params: Any) -> TracePolicy:
    """The policy ``name`` with ``params`` overriding its defaults (FieldError on bad input)."""
    classes = policy_classes()
    if name not in classes:
        raise FieldError("policies", f"unknown policy {name!r}; valid: {', '.join(classes)}")
    try:
        policy: TracePolicy = classes[name](**params)
    except TypeError as exc:  # an unknown parameter name
        raise FieldError("policies", f"{name}: {exc}") from None
    return policy
