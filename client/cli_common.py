"""What the ``raftka`` commands share: consoles, readable client errors, the global settings, the admin client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console

from raftka.client.blocking import Admin
from raftka.client.connection import BOOTSTRAP_ENV, ClientSecurity, parse_bootstrap
from raftka.client.errors import NoBrokersAvailable, RaftkaError, TopicNotFoundError

__all__ = ["Settings", "admin_client", "explain", "ErrorsGroup", "stderr", "stdout"]


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def explain(exc: RaftkaError) -> str:
    """A user-facing explanation of a client error."""
    if isinstance(exc, NoBrokersAvailable):
        tried = "\n".join(f"  {url}: {why or 'failed'}" for url, why in exc.tried.items())
        return (
            f"Cannot reach the raftka cluster. Addresses tried:\n{tried}\n"
            f"Is it running? Start a local one with `raftka dev`, or point --bootstrap / ${BOOTSTRAP_ENV} at a broker."
        )
    if isinstance(exc, TopicNotFoundError):
        hint = f" Did you mean: {', '.join(exc.suggestions)}?" if exc.suggestions else ""
        return f"{exc.message}{hint} (see `raftka topics list`)"
    return str(exc)


class ErrorsGroup(click.Group):
    """Turns client errors into readable messages with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RaftkaError as exc:
            raise click.ClickException(explain(exc)) from exc
        except TimeoutError as exc:
            raise click.ClickException(f"timed out: {exc}") from exc


class Settings:
    def __init__(self, bootstrap: str, security: dict[str, str | None]) -> None:
        try:
            self.bootstrap = parse_bootstrap(bootstrap)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--bootstrap") from None
        try:
            ClientSecurity(**security).ssl_context()
        except (ValueError, OSError) as exc:
            raise click.BadParameter(str(exc), param_hint="--user/--ca-file/--cert-file") from None
        self.security = security  # keyword arguments of Producer, Consumer and Admin


@contextmanager
def admin_client(ctx: click.Context) -> Iterator[Admin]:
    settings = ctx.find_object(Settings)
    admin = Admin(settings.bootstrap, **settings.security)
    try:
        yield admin
    finally:
        admin.close()


