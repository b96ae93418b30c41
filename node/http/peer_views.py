"""`GET /brokers/{broker}/{view}`: one broker's own view (health, raft, metrics) through any broker.

`/health`, `/raft` and `/metrics` describe the broker that answers them. A
client that can reach only one broker (a browser on the web console, a
firewalled operator) asks that broker for another's view; the answer is relayed
unchanged, or is a retriable 503 50302 when the other broker cannot be reached.
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
        if not (raw.isascii() and raw.isdigit()) or int(raw) not in broker.urls:
            raise InvalidRequest(f"Unknown broker '{raw}'; the brokers are {sorted(broker.urls)}.")
        target = int(raw)
        if target == broker.id:
            return await views[view](request)
        unreachable = BrokerNotAvailable(f"Broker {target} cannot be reached.")
        return await forward(request, broker.session, broker.urls[target], unreachable, path=f"/{view}",
                             timeout=VIEW_TIMEOUT_S)

    app.router.add_get("/brokers/{broker}/{view}", peer_view)


__all__ = ["add_peer_view_routes"]
