"""Activities: the functions a worker offers, under qualified ``workflow.activity`` names.

Two ways to say what a worker runs, which may be mixed:

* a mapping, ``Worker(..., workflows={"billing": {"charge": charge}})``;
* the :func:`activity` decorator, ``@activity("billing")`` above the function (the
  activity name defaults to the function's name), then
  ``Worker(..., activities=[charge])``.

An activity is an ``async def`` (run on the worker's event loop, cancelled with
:mod:`asyncio` cancellation) or a plain function (run in a thread, cancelled by
setting its context's cancel event).  It receives the task's input, and the
:class:`~treadle_sdk.context.ActivityContext` as a second argument when it takes
one; it can also reach the context with :func:`treadle_sdk.context.current`.

Names follow the manifest grammar (MANIFEST-4, SDK-1): ``[A-Za-z_][A-Za-z0-9_-]*``,
no dots, so the qualified name splits unambiguously.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from treadle_protocol.manifest import NAME_PATTERN

from .errors import ConfigError

__all__ = ["Activity", "ActivityTable", "activity"]

F = TypeVar("F", bound=Callable[..., Any])
_DECLARED: Final = "__treadle_activity__"


def _check_name(field: str, name: object) -> str:
    if not isinstance(name, str) or NAME_PATTERN.match(name) is None:
        raise ConfigError(field, f"{name!r} must match [A-Za-z_][A-Za-z0-9_-]* (no dots)")
    return name


def _takes_context(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a second positional argument (the context)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in positional)


@dataclass(frozen=True, slots=True)
class Activity:
    """One registered activity."""

    workflow: str
    name: str
    fn: Callable[..., Any]
    is_async: bool
    takes_context: bool

    @property
    def qualified_name(self) -> str:
        """The routing name, ``workflow.activity``."""
        return f"{self.workflow}.{self.name}"

    @classmethod
    def of(cls, workflow: str, name: str, fn: Callable[..., Any]) -> Activity:
        if not callable(fn):
            raise ConfigError("workflows", f"{workflow}.{name} is not callable")
        _check_name("workflow", workflow)
        _check_name("activity", name)
        return cls(
            workflow=workflow,
            name=name,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            takes_context=_takes_context(fn),
        )


def activity(workflow: str, name: str | None = None) -> Callable[[F], F]:
    """Declare ``fn`` as activity ``workflow.<name or fn.__name__>``.

    Pass the function to ``Worker(activities=[…])``.
    """
    _check_name("workflow", workflow)
    if name is not None:
        _check_name("activity", name)

    def declare(fn: F) -> F:
        Activity.of(workflow, name or fn.__name__, fn)  # validate now, at import time
        setattr(fn, _DECLARED, (workflow, name or fn.__name__))
        return fn

    return declare


class ActivityTable:
    """Activities by qualified name, in registration order."""

    def __init__(
        self,
        workflows: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
        activities: Iterable[Callable[..., Any]] = (),
    ) -> None:
        self._by_name: dict[str, Activity] = {}
        for workflow, table in (workflows or {}).items():
            if not isinstance(table, Mapping):
                raise ConfigError("workflows", f"{workflow!r} must map activity names to functions")
            for name, fn in table.items():
                self.add(Activity.of(workflow, name, fn))
        for fn in activities:
            declared = getattr(fn, _DECLARED, None)
            if declared is None:
                raise ConfigError(
                    "activities", f"{fn!r} is not declared with @activity(workflow, name)"
                )
            self.add(Activity.of(declared[0], declared[1], fn))
        if not self._by_name:
            raise ConfigError("workflows", "register at least one activity")

    def add(self, entry: Activity) -> None:
        if entry.qualified_name in self._by_name:
            raise ConfigError("workflows", f"{entry.qualified_name} is registered twice")
        self._by_name[entry.qualified_name] = entry

    def get(self, qualified_name: str) -> Activity | None:
        return self._by_name.get(qualified_name)

    def __iter__(self) -> Iterator[Activity]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> list[str]:
        """The qualified names, as the server will route them."""
        return list(self._by_name)

    def by_workflow(self) -> dict[str, list[str]]:
        """Activity names grouped by workflow."""
        grouped: dict[str, list[str]] = {}
        for entry in self:
            grouped.setdefault(entry.workflow, []).append(entry.name)
        return grouped
