"""The web console: a single-page app served by every broker at ``/ui``.

The page is static files shipped in this package (``static/``: our ES modules,
the stylesheet, and pinned third-party builds described in ``static/README.md``);
it is a client of the broker's public HTTP API only. ``add_console_routes``
adds ``GET /ui`` and ``/ui/`` (the page) and ``GET /ui/{file}`` (its assets) to an app.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

__all__ = ["add_console_routes"]

_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".md": "text/plain",
          ".txt": "text/plain"}


def _load_assets() -> dict[str, tuple[bytes, str]]:
    """Every shipped file by name, read once: (bytes, content type)."""
    assets = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        content_type = _TYPES.get("." + entry.name.rsplit(".", 1)[-1])
        if entry.is_file() and content_type is not None:
            assets[entry.name] = (entry.read_bytes(), content_type)
    return assets


def add_console_routes(app: web.Application) -> None:
    assets = _load_assets()
    index_body, _ = assets["index.html"]

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=index_body, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in assets:
            raise web.HTTPNotFound()  # answered like any unknown path: 404 40400
        body, content_type = assets[name]
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.router.add_get("/ui", index)
    app.router.add_get("/ui/", index)
    app.router.add_get("/ui/{file}", asset)
