"""`GET /brokers/{broker}/{view}`: one broker's own view (health, raft, metrics) through any broker.

`/health`, `/raft` and `/metrics` describe the broker that answers them. A
client that can reach only one broker (a browser on the web console, a
firewalled operator) asks that broker for another's view; the answer is relayed
unchanged, or is a retriable 503 50302 when the other broker cannot be reached.
A decommissioned broker's views are still relayed to its last address while it
runs: an operator looks before stopping it, and a console that listed it a poll
earlier asks once more after its decommission finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from raftka.node.errors import BrokerNotAvailable, InvalidRequest
from raftka.node.http.common import SERVICES_KEY
from raftka.node.http.forwarding import forward

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VIEW_TIMEOUT_S = 3.0


def add_peer_view_routes(app: web.Application, views: dict[str, Handler]) -> None:
    async def peer_view(request: web.Request) -> web.StreamResponse:
        broker = request.app[SERVICES_KEY].broker
        raw, view = request.match_info["broker"], request.match_info["view"]
        if view not in views:
            raise InvalidRequest(f"Unknown view '{view}'; one of {', '.join(sorted(views))}.")
        url = _address_of(broker, int(raw)) if raw.isascii() and raw.isdigit() else None
        if url is None:
            raise InvalidRequest(f"Unknown broker '{raw}'; the brokers are {sorted(broker.urls)}.")
        target = int(raw)
        if target == broker.id:
            return await views[view](request)
        unreachable = BrokerNotAvailable(f"Broker {target} cannot be reached.")
        return await forward(request, broker.session, url, unreachable, path=f"/{view}", timeout=VIEW_TIMEOUT_S)

    app.router.add_get("/brokers/{broker}/{view}", peer_view)


def _address_of(broker, target: int) -> str | None:
    """A member's address, else the last one the registry recorded (a decommissioned broker), else None."""
    if target in broker.urls:
        return broker.urls[target]
    md = broker.metadata
    entry = (md.brokers() if md is not None else {}).get(target, {})
    return entry.get("http_url")


__all__ = ["add_peer_view_routes"]
