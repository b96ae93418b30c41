"""The HTTP server under the broker's app: request-line and header limits, and JSON errors for requests that
cannot be parsed.

aiohttp answers a request it cannot parse (a request line or a header over its
limit, bad syntax) before any route or middleware runs, with a plain-text 400
and an ERROR traceback in the log. `BrokerAppRunner` answers them as every
other error instead: ``{"error_code", "message"}`` with 414 (request line over
`MAX_REQUEST_LINE_BYTES`), 431 (a header over `MAX_HEADER_BYTES`, or too many
headers) or 400, and logs one line without a traceback: a client's mistake is
not a broker failure.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler

from raftka.node.errors import error_body

log = logging.getLogger("raftka.node.http.server")

MAX_REQUEST_LINE_BYTES = 16384  # method, URL and version
MAX_HEADER_BYTES = 8190  # one header, name and value (aiohttp's default)


def unparseable_request_error(exc: BaseException) -> tuple[int, bytes] | None:
    """(HTTP status, error document) for a request aiohttp could not parse; None for other failures."""
    if isinstance(exc, LineTooLong):
        if str(exc.args[1]) == str(MAX_REQUEST_LINE_BYTES):
            return 414, error_body(41400, f"Request line (method and URL) over {MAX_REQUEST_LINE_BYTES} bytes.")
        return 431, error_body(43100, f"A request header (name and value) is over {MAX_HEADER_BYTES} bytes.")
    if isinstance(exc, BadHttpMessage) and not isinstance(exc, BadHttpMethod):
        if "too many headers" in str(exc).lower():
            return 431, error_body(43100, "Too many request headers.")
        return 400, error_body(40000, f"Malformed HTTP request: {exc.message}")
    if isinstance(exc, BadHttpMethod):
        return 400, error_body(40000, "Malformed HTTP request: not an HTTP method.")
    return None


class _JsonErrorsRequestHandler(RequestHandler):
    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        answer = unparseable_request_error(exc) if exc is not None else None
        if answer is None or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        status, body = answer
        log.info("refused an unparseable request from %s: %d %s", request.remote, status, body.decode())
        response = web.Response(status=status, body=body, content_type="application/json")
        response.force_close()
        return response


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorsRequestHandler(self, loop=self._loop, **self._kwargs)


class BrokerAppRunner(web.AppRunner):
    """`web.AppRunner` with raftka's request limits, answering unparseable requests with JSON errors."""

    def __init__(self, app: web.Application, **kwargs) -> None:
        super().__init__(app, max_line_size=MAX_REQUEST_LINE_BYTES, max_field_size=MAX_HEADER_BYTES, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer  # same state; only the connections it makes differ
        return server


__all__ = ["BrokerAppRunner", "MAX_HEADER_BYTES", "MAX_REQUEST_LINE_BYTES", "unparseable_request_error"]
