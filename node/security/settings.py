"""The security part of a broker's configuration (`BrokerConfig.security`), and the bootstrap user file.

* ``auth``: "required" (every client request authenticated, then authorized by ACLs) or "none" (no
  authentication, no authorization). Unset, it is "none" when every client listener binds to loopback and
  "required" otherwise; "none" on a non-loopback listener must be asked for explicitly and then warns
  (``auth_warning``: in the log and /health), as does authentication without TLS beyond loopback.
* ``superusers``: principals allowed everything, from ``--superusers`` plus the users of the bootstrap file.
* ``metrics_auth``: whether /metrics and /raft need a user allowed to DESCRIBE the cluster ("required") or are
  open ("none").
* ``tls``: certificate and key of the client listeners (and of this broker towards its peers), optional CA for
  client certificates (mutual TLS: the principal is then ``User:<subject CN>``) and CA that peers' certificates
  must chain to.

The bootstrap user file has one ``name:password`` per line (blank lines and ``#`` comments ignored); those
users are created in the metadata group on the cluster's first start and are superusers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raftka.node.security.state import USER_NAME

__all__ = ["AUTH_MODES", "DEFAULT_LOGIN_FAILURE_LIMIT", "SecurityConfig", "TlsFiles", "read_bootstrap_users"]

AUTH_MODES = ("required", "none")
DEFAULT_LOGIN_FAILURE_LIMIT = 20  # failed logins per source address per minute


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # verify client certificates against this CA (mutual TLS)
    peer_ca: Path | None = None  # peers' certificates must chain to this CA (default: the system's)


@dataclass(frozen=True)
class SecurityConfig:
    auth: str = "none"
    superusers: frozenset[str] = frozenset()
    bootstrap_user_file: Path | None = None
    metrics_auth: str = "none"
    tls: TlsFiles | None = None
    login_failure_limit: int = DEFAULT_LOGIN_FAILURE_LIMIT
    auth_warning: str | None = None  # why this setup is risky (no authentication, or passwords in the clear)

    @property
    def auth_required(self) -> bool:
        return self.auth == "required"

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"


def read_bootstrap_users(path: Path) -> dict[str, str]:
    """name -> password from a bootstrap user file; ValueError naming the line on a malformed one (never echoing
    the password)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not password:
            raise ValueError(f"'{path}' line {number}: expected name:password")
        if not USER_NAME.fullmatch(name):
            raise ValueError(f"'{path}' line {number}: user names are 1-255 characters of A-Z a-z 0-9 . _ @ + -")
        if name in found:
            raise ValueError(f"'{path}' line {number}: user '{name}' is listed twice")
        found[name] = password
    if not found:
        raise ValueError(f"'{path}' lists no users")
    return found
