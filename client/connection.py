"""HTTP to one broker: bootstrap address parsing, keep-alive connections, answers or mapped errors.

``Connection.request`` sends one request to one broker base URL and returns a
``Response`` for 2xx answers. Everything else becomes a ``RaftkaError``:
error documents via ``error_from_response``; failing to connect becomes
``BrokerConnectionError`` (the request was not delivered); no answer in time
or a dropped connection after sending becomes ``RequestTimedOutError`` (the
request may have taken effect). Choosing *which* broker to ask is
``raftka.client.cluster``'s job.

``ClientSecurity`` is what a client needs for a secured cluster: a user name
and password (sent as HTTP Basic on every request: use https beyond loopback),
a CA file to trust the brokers' certificates
(``https://`` bootstrap addresses), and a client certificate for mutual TLS.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import orjson
from multidict import CIMultiDictProxy

from raftka.client.errors import BrokerConnectionError, ProtocolError, RequestTimedOutError, error_from_response
from raftka.client.http_answers import MalformedAnswer
from raftka.client.http_channels import Channels, ChannelLost

__all__ = [
    "BATCH_CONTENT_TYPE",
    "BOOTSTRAP_ENV",
    "BROKER_HEADER",
    "DEFAULT_BOOTSTRAP",
    "ClientSecurity",
    "Connection",
    "Response",
    "normalize_url",
    "parse_bootstrap",
]

BOOTSTRAP_ENV = "RAFTKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "http://127.0.0.1:9091"
BROKER_HEADER = "X-Raftka-Broker"
BATCH_CONTENT_TYPE = "application/vnd.raftka.batch"
_JSON = "application/json"


def normalize_url(address: str) -> str:
    """``host:port`` or ``http://host:port[/]`` -> ``http://host:port`` (ValueError if unusable)."""
    text = address.strip()
    if not text:
        raise ValueError("empty broker address")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"broker address {address!r}: scheme must be http or https")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker address {address!r}: {exc}") from None
    if not parts.hostname or port is None:
        raise ValueError(f"broker address {address!r} must be host:port or http://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker address {address!r} must not have a path or query")
    return f"{parts.scheme}://{parts.netloc}"


def parse_bootstrap(servers: str | Sequence[str] | None) -> list[str]:
    """Bootstrap URLs from a list or comma-separated string; None means $RAFTKA_BOOTSTRAP or the default."""
    if servers is None:
        servers = os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    urls: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip() and isinstance(servers, str):
            continue  # tolerate "a,,b" and trailing commas in strings
        url = normalize_url(item)
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ValueError("no bootstrap servers given")
    return urls


class Response(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str  # base URL of the broker that was asked

    @property
    def served_by(self) -> int | None:
        """The broker id in ``X-Raftka-Broker`` (the broker that served the request after forwarding)."""
        value = self.headers.get(BROKER_HEADER)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def json(self) -> Any:
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"broker answered invalid JSON: {exc}", broker=self.url) from None


@dataclass(frozen=True)
class ClientSecurity:
    """Credentials and TLS settings (all optional): ``username``/``password`` for HTTP Basic, ``ssl_cafile`` to
    verify the brokers' certificates (default: the system's CAs), ``ssl_certfile``/``ssl_keyfile`` to present
    a client certificate (mutual TLS; ``ssl_keyfile`` may be omitted when the certificate file holds the key)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and ":" in self.username:
            raise ValueError("a username cannot contain ':'")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile")

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What https is verified with: True (the system's CAs) or a context with our CA / certificate."""
        if self.ssl_cafile is None and self.ssl_certfile is None:
            return True
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile is not None:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def headers(self) -> dict[str, str]:
        """Headers every request carries (HTTP Basic credentials, if any)."""
        if self.username is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


class Connection:
    """Keep-alive HTTP/1.1 connections (``http_channels``) shared by all requests of a client; used on one
    event loop. Its own HTTP rather than aiohttp's client session: a request costs the client 22-50 % less CPU
    (README, "The Python client's own HTTP")."""

    def __init__(self, *, request_timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                 security: ClientSecurity | None = None) -> None:
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.security = security or ClientSecurity()
        context = self.security.ssl_context()  # read the files now: a missing CA file fails at construction
        self._channels = Channels(context if isinstance(context, ssl.SSLContext) else None)
        self._auth = "".join(f"{name}: {value}\r\n" for name, value in self.security.headers().items())
        self._brokers: dict[str, tuple[str, int, bool, str]] = {}  # base URL -> host, port, TLS, Host header

    def _broker(self, base_url: str) -> tuple[str, int, bool, str]:
        broker = self._brokers.get(base_url)
        if broker is None:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BrokerConnectionError(f"cannot connect: not a broker address {base_url!r}", broker=base_url)
            tls = parts.scheme == "https"
            try:
                port = parts.port or (443 if tls else 80)
            except ValueError as exc:
                raise BrokerConnectionError(f"cannot connect: {exc}", broker=base_url) from None
            broker = self._brokers[base_url] = (parts.hostname, port, tls, parts.netloc)
        return broker

    async def request(
        self,
        base_url: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str | int] | None = None,
        accept: str | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        """Send one request; 2xx -> Response, anything else -> a RaftkaError subclass."""
        if json is not None:
            data = orjson.dumps(json)
            content_type = _JSON
        host, port, tls, netloc = self._broker(base_url)
        target = f"{path}?{urlencode(params)}" if params else path
        body = data or b""
        head = (f"{method} {target} HTTP/1.1\r\nHost: {netloc}\r\n{self._auth}"
                + (f"Content-Type: {content_type}\r\n" if content_type else "")
                + (f"Accept: {accept}\r\n" if accept else "")
                + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        total = self.request_timeout_s if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total
        channel = self._channels.take_idle(host, port, tls)
        if channel is None:
            try:
                async with asyncio.timeout(min(self.connect_timeout_s, total)):
                    channel = await self._channels.connect(host, port, tls)
            except TimeoutError as exc:
                raise BrokerConnectionError("connect timed out", broker=base_url) from exc
            except (OSError, ssl.SSLError) as exc:
                raise BrokerConnectionError(f"cannot connect: {_reason(exc)}", broker=base_url) from exc
        try:
            async with asyncio.timeout_at(deadline):
                answer = await channel.exchange(head + body)
        except TimeoutError as exc:
            self._channels.discard(channel)
            raise RequestTimedOutError(f"no answer within {total:g} s", broker=base_url) from exc
        except (ChannelLost, MalformedAnswer, OSError) as exc:
            self._channels.discard(channel)
            raise RequestTimedOutError(f"connection lost: {exc}", broker=base_url) from exc
        except BaseException:
            self._channels.discard(channel)
            raise
        self._channels.release(channel, host, port, tls, answer)
        if answer.status >= 400:
            raise error_from_response(answer.status, answer.body, broker=base_url)
        return Response(answer.status, answer.headers, answer.body, base_url)

    async def close(self) -> None:
        self._channels.close()


def _reason(exc: BaseException) -> str:
    """Why connecting failed, in words (with the fix when it is a certificate nobody told us to trust)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted (SSLCertVerificationError: {exc.verify_message or exc}); " \
               "give the CA file (ssl_cafile / --ca-file)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text
