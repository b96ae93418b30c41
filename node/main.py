"""`raftka-node`: load the configuration, run one broker until SIGTERM/SIGINT (or until the process that started
it exits, with --stop-when-fd-closes), shut down gracefully.

Assembly: the broker core (`cluster`), its services (`services`, `groups`, `security`), and the two front ends
over them: HTTP (`http`) and, with --kafka-listen, the Kafka wire protocol (`kafka`); both with TLS when
configured (SIGHUP re-reads the certificates).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys

from aiohttp import web

from raftka.node.cluster.broker import Broker
from raftka.node.cluster.identity import IdentityError
from raftka.node.config import ConfigError, load_config
from raftka.node.http.app import create_app
from raftka.node.http.broker_groups import HttpGroups
from raftka.node.http.server import BrokerAppRunner
from raftka.node.kafka.registration import ListenerRegistrar
from raftka.node.kafka.server import KafkaServer
from raftka.node.services import BrokerServices
from raftka.raft.host import GroupStateLost

log = logging.getLogger("raftka.node")


async def serve(broker: Broker) -> None:
    config = broker.config
    await broker.start()
    services = BrokerServices.of(broker)
    await services.groups.start()
    http_groups = HttpGroups(services)
    await http_groups.start()
    await services.security.start()
    app = create_app(services, http_groups)
    runner = BrokerAppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tls = broker.tls
    site = web.TCPSite(runner, config.listen.host, config.listen.port, reuse_address=True,
                       ssl_context=tls.server if tls is not None else None)
    try:
        await site.start()
    except OSError:  # the HTTP port is taken: stop what started, then report it
        await services.security.stop()
        await http_groups.stop()
        await services.groups.stop()
        await broker.stop()
        await runner.cleanup()
        raise
    log.info("broker %d serving HTTP%s on %s:%d (auth %s), raft on %s:%d", broker.id, "S" if tls else "",
             config.listen.host, config.listen.port, config.security.auth, config.raft_listen.host,
             config.raft_listen.port)
    registrar = ListenerRegistrar(services)  # on the metadata leader: every broker's Kafka address
    await registrar.start()
    kafka = KafkaServer(services) if config.kafka_listen is not None else None
    if kafka is not None:
        await kafka.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if config.stop_when_fd_closes is not None:
        watch_parent_pipe(loop, config.stop_when_fd_closes, stop)
    if tls is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_certificates, broker)
    await stop.wait()
    log.info("broker %d shutting down: handing over leadership, flushing", broker.id)
    if kafka is not None:
        await kafka.stop()
    await registrar.stop()
    await site.stop()
    await services.security.stop()
    await http_groups.stop()  # REST consumer instances commit and leave while the coordinator still runs
    await services.groups.stop()
    await broker.stop()
    await runner.cleanup()


def watch_parent_pipe(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event) -> None:
    """Set `stop` when the pipe `fd` reaches end of file: every process holding its write end has exited (`raftka
    dev` or a test keeps it; the kernel closes it however they end, kill -9 included)."""
    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            log.info("the process that started this broker has exited: shutting down")
            stop.set()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


def reload_certificates(broker: Broker) -> None:
    """SIGHUP: re-read the TLS certificate, key and CAs; keep the running ones if the new files are unusable."""
    try:
        broker.tls.reload()
    except (OSError, ssl.SSLError) as exc:
        log.error("broker %d: SIGHUP: certificates not reloaded, keeping the current ones: %s", broker.id,
                  getattr(exc, "strerror", None) or exc)
        return
    log.info("broker %d: SIGHUP: TLS certificates reloaded from %s", broker.id, broker.tls.files.cert)


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"raftka-node: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format=f"%(asctime)s broker-{config.broker_id} %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(Broker(config)))
    except (IdentityError, ValueError) as exc:
        print(f"raftka-node: {exc}", file=sys.stderr)
        return 2
    except GroupStateLost as exc:
        print(f"raftka-node: refusing to start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"raftka-node: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
