"""Forwarding a request to the broker that can serve it ("connect to one, reach them all").

When a service says an operation runs on another broker (`ServedElsewhere`:
the partition's or the metadata group's leader), this broker replays the
request there and relays the answer.  The relayed answer
keeps the leader's `X-Raftka-Broker` header, so smart clients learn where to
go next time.  `X-Raftka-Forwarded` counts hops: a request is forwarded at most
`MAX_HOPS` times, then answered with the retriable NotLeader error. A forwarded request acts for the
client that sent it: the broker's session signs its principal and address (`raftka.node.security.peer`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from raftka.node.errors import BrokerNotAvailable, NotLeader, RequestTimedOut
from raftka.node.http.auth import identity_headers
from raftka.node.http.common import SERVICES_KEY
from raftka.node.services.routing import ServedElsewhere

FORWARDED_HEADER = "X-Raftka-Forwarded"
BROKER_HEADER = "X-Raftka-Broker"
MAX_HOPS = 2
_PASSED_HEADERS = ("Content-Type", "Accept")
_RELAYED_HEADERS = ("Content-Type", BROKER_HEADER, "X-Raftka-High-Watermark", "X-Raftka-Log-Start",
                    "X-Raftka-Next-Offset")


def hops(request: web.Request) -> int:
    try:
        return int(request.headers.get(FORWARDED_HEADER, "0"))
    except ValueError:
        return MAX_HOPS


async def forward(request: web.Request, session: aiohttp.ClientSession, target_url: str, error: NotLeader,
                  *, body: bytes | None = None, path: str | None = None, content_type: str | None = None,
                  timeout: float = 35.0) -> web.Response:
    """Replay `request` (or `body` of `content_type` to `path`) at `target_url`; raise `error` if hops
    are exhausted."""
    count = hops(request)
    if count >= MAX_HOPS:
        raise error
    data = body if body is not None else await request.read()
    headers = {h: request.headers[h] for h in _PASSED_HEADERS if h in request.headers}
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers[FORWARDED_HEADER] = str(count + 1)
    headers.update(identity_headers(request))  # signed by the broker's session: acts for the same client
    url = target_url + (path if path is not None else request.path_qs)
    try:
        async with session.request(request.method, url, data=data, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout, connect=2)) as resp:
            payload = await resp.read()
            relayed = {h: resp.headers[h] for h in _RELAYED_HEADERS if h in resp.headers}
            return web.Response(status=resp.status, body=payload, headers=relayed)
    except aiohttp.ClientConnectorError as exc:  # never delivered: a definite failure
        raise BrokerNotAvailable(f"Could not reach {target_url} to forward the request "
                                 f"({type(exc).__name__}: {exc}); retry.") from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:  # delivered, no answer: unknown
        raise RequestTimedOut(f"{target_url} did not answer the forwarded request ({type(exc).__name__}); "
                              "its outcome is unknown: retry (idempotently for produce).") from None


async def forward_elsewhere(request: web.Request, elsewhere: ServedElsewhere, **options) -> web.Response:
    """Replay the request at the broker a service named (`forward` options apply); answer `elsewhere` itself, the
    retriable NotLeader, when the hops are exhausted."""
    session = request.app[SERVICES_KEY].broker.session
    return await forward(request, session, elsewhere.leader_url, elsewhere, **options)


def forwarded_elsewhere(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Wrap a handler so that a `ServedElsewhere` from its service replays the whole request at that broker."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ServedElsewhere as elsewhere:
            return await forward_elsewhere(request, elsewhere)

    return wrapped
