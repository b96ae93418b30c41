"""What the Raft simulation tests exercised, for the end of the test log.

Tests call `record(key, line)` (a line, or a callable that renders one at the end); the
`pytest_terminal_summary` hook in tests/conftest.py prints every recorded line, in
order, under a "raft simulation statistics" header of a plain `make test` run (no -s
needed).  A key recorded twice keeps its latest line.  Under pytest-xdist each worker
hands its rendered lines (`rendered_items`) to the controller, which `merge`s them.
"""

from __future__ import annotations

from collections.abc import Callable

LINES: dict[str, str | Callable[[], str]] = {}


def record(key: str, line: str | Callable[[], str]) -> None:
    LINES.pop(key, None)
    LINES[key] = line


def rendered_items() -> dict[str, str]:
    return {key: line() if callable(line) else line for key, line in LINES.items()}


def rendered() -> list[str]:
    return list(rendered_items().values())


def merge(items: dict[str, str]) -> None:
    """Lines a worker process rendered (see `rendered_items`)."""
    for key, line in items.items():
        record(key, line)
