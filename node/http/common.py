"""What every HTTP route module shares: the app keys, JSON responses, and request parsing helpers.

`app.py` imports the route modules; the route modules import this one, never `app.py`.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from raftka.node.errors import ApiError, InvalidRequest
from raftka.node.metrics import MetricsRegistry
from raftka.node.services import BrokerServices

JSON = "application/json"
SERVICES_KEY = web.AppKey("services", BrokerServices)
METRICS_KEY = web.AppKey("metrics", MetricsRegistry)


def json_response(doc, status: int = 200, content_type: str = JSON) -> web.Response:
    return web.Response(body=orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS), status=status,
                        content_type=content_type)


def error_response(exc: ApiError) -> web.Response:
    return web.Response(body=exc.to_json(), status=exc.http_status, content_type=JSON)


async def read_json(request: web.Request) -> dict:
    body = await request.read()
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}.") from None
    if type(doc) is not dict:
        raise InvalidRequest("Request body must be a JSON object.")
    return doc


def partition_number(request: web.Request) -> int:
    raw = request.match_info["partition"]
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest(f"Partition must be a non-negative integer, got '{raw}'.")
    return int(raw)


def query_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise InvalidRequest(f"Query parameter '{name}' is required.")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"Query parameter '{name}' must be an integer, got '{raw}'.") from None
    if not low <= value <= high:
        raise InvalidRequest(f"Query parameter '{name}' must be between {low} and {high}, got {value}.")
    return value
