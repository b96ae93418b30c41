"""TLS and authentication for a run (``--tls``): certificates, the admin user, and what clients need.

`RunTls` writes into the run's ``tls/`` folder a throwaway CA and one broker certificate valid for every
address the brokers and the clients use (``raftka.client.devcerts``), and a bootstrap user file with the
superuser ``admin`` and a random password (mode 0600). The brokers then run with ``--auth required``, TLS
and that file; `ApiSecurity` is what a client needs (the CA, the user, the file holding the password — the
workload's config names the file, never the password) and builds the TLS context and the ``Authorization``
header of `api.BrokerApi`, or the SASL_SSL settings of a Kafka run's clients.
"""

from __future__ import annotations

import base64
import functools
import secrets
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftka.client.devcerts import write_dev_certificates

from .topology import CLIENT

USER = "admin"


@dataclass(frozen=True)
class ApiSecurity:
    ca_file: str
    user: str
    password_file: str  # a bootstrap user file: "user:password" lines

    @functools.cached_property
    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    @functools.cached_property
    def authorization(self) -> str:
        for line in Path(self.password_file).read_text().splitlines():
            name, _, password = line.partition(":")
            if name == self.user:
                return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()
        raise ValueError(f"{self.password_file} has no password for {self.user}")

    def kafka_config(self) -> dict[str, str]:
        """confluent-kafka settings for the run's admin: SASL_SSL with SCRAM-SHA-512."""
        password = self.authorization.removeprefix("Basic ")
        user, _, password = base64.b64decode(password).decode().partition(":")
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
                "sasl.password": password, "ssl.ca.location": self.ca_file}

    def to_json(self) -> dict[str, str]:
        return {"ca_file": self.ca_file, "user": self.user, "password_file": self.password_file}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> ApiSecurity | None:
        return None if doc is None else cls(doc["ca_file"], doc["user"], doc["password_file"])


class RunTls:
    def __init__(self, directory: Path, hosts: Iterable[str]):
        self.directory = directory
        self.certs = write_dev_certificates(directory, tuple(sorted(set(hosts))))
        self.users_file = directory / "users.txt"
        self.users_file.write_text(f"{USER}:{secrets.token_urlsafe(18)}\n")
        self.users_file.chmod(0o600)
        self.api = ApiSecurity(str(self.certs.ca_cert), USER, str(self.users_file))

    def broker_options(self) -> dict[str, Any]:
        """Keyword arguments of `processes.Brokers`: the brokers' flags, and the CA of the health checks."""
        return {"node_args": ("--auth", "required", "--tls-cert", str(self.certs.broker_cert), "--tls-key",
                              str(self.certs.broker_key), "--tls-ca", str(self.certs.ca_cert),
                              "--bootstrap-user-file", str(self.users_file)),
                "tls_ca": str(self.certs.ca_cert)}


def hosts_of(cluster) -> set[str]:
    """Every host a broker is reached at, by the client or by its peers (the certificate's names)."""
    nodes = list(cluster.nodes)
    services = [s for s in ("http", "kafka") if s in cluster.services]
    return {cluster.address(src, dst, service)[0] for src in [CLIENT, *nodes] for dst in nodes
            for service in services} | {"localhost", "127.0.0.1"}
