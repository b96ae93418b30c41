"""raftka.node.http — the HTTP front end (Confluent REST Proxy v2 style): the aiohttp app, its routes,
the REST Proxy formats, REST consumer instances, and forwarding requests between brokers."""
