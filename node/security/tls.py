"""TLS for the client listeners and for this broker's requests to its peers, re-read on SIGHUP.

`BrokerTls` holds two live `ssl.SSLContext`s: `server` (the HTTP and Kafka listeners: this broker's certificate,
and with a client CA, client certificates are asked for and verified — optional, so a client may log in with a
password instead) and `client` (requests to peers: their certificates must chain to the peer CA, or to the
system's CAs; this broker presents its own certificate in case a peer asks). `reload` builds new contexts from
the files first — a broken certificate, a key that does not match, a missing file leave the running ones
untouched and raise `ssl.SSLError`/`OSError` — and then loads the files into the live contexts, so connections
accepted from then on use the new certificate and open connections are not disturbed.
"""

from __future__ import annotations

import ssl

from raftka.node.security.settings import TlsFiles

__all__ = ["BrokerTls", "peer_principal_name"]


def _server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_server(context, files)
    if files.client_ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _load_server(context: ssl.SSLContext, files: TlsFiles) -> None:
    context.load_cert_chain(files.cert, files.key)
    if files.client_ca is not None:
        context.load_verify_locations(cafile=files.client_ca)


def _client_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files.peer_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context


class BrokerTls:
    def __init__(self, files: TlsFiles):
        self.files = files
        self.server = _server_context(files)
        self.client = _client_context(files)

    def reload(self) -> None:
        """Re-read the certificate, key and CAs (validated on fresh contexts before the live ones change)."""
        _server_context(self.files)
        _client_context(self.files)
        _load_server(self.server, self.files)
        self.client.load_cert_chain(self.files.cert, self.files.key)
        if self.files.peer_ca is not None:
            self.client.load_verify_locations(cafile=self.files.peer_ca)

    @staticmethod
    def check(files: TlsFiles) -> None:
        """Raise ssl.SSLError/OSError if the files cannot serve (for configuration checks)."""
        _server_context(files)
        _client_context(files)


def peer_principal_name(peercert: dict | None) -> str | None:
    """The subject CN of a verified client certificate (`ssl.SSLSocket.getpeercert()`), or None."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value:
                return value
    return None
