"""What the Raft simulation tests exercised, for the end of the test log.

Tests call `record(key, line)` (a line, or a callable that renders one at the end); the
`pytest_terminal_summary` hook in tests/conftest.py prints every recorded line, in
order, under a "raft simulation statistics" header of a plain `make test` run (no -s
needed).  A key recorded twice keeps its latest line.
"""

from __future__ import annotations

from collections.abc import Callable

LINES: dict[str, str | Callable[[], str]] = {}


def record(key: str, line: str | Callable[[], str]) -> None:
    LINES.pop(key, None)
    LINES[key] = line


def rendered() -> list[str]:
    return [line() if callable(line) else line for line in LINES.values()]
