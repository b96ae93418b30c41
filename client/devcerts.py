"""Throwaway TLS certificates and users for development and tests: a CA, broker and client certificates,
and `DevSecurity` (TLS plus a bootstrap admin user for a local cluster).

`raftka dev --tls` and the tests use them; production clusters bring their own. Keys are ECDSA P-256 (fast to
make), written with mode 0600. A broker certificate is valid for the host names and addresses it is given (by
default localhost, 127.0.0.1 and ::1) for both server and client use (brokers present it to each other); a
client certificate's subject CN is the user it logs in as with mutual TLS.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DEFAULT_HOSTS", "CertificateAuthority", "DevCertificates", "DevSecurity", "write_dev_certificates"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "raftka dev CA", days: int = 30) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(_now() - _DAY)
                .not_valid_after(_now() + days * _DAY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """The CA written by `write` into `directory` (``ca.pem``, ``ca.key``)."""
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        return cls(cert, key)  # type: ignore[arg-type]

    def issue(self, common_name: str, hosts: tuple[str, ...] = (), *, days: int = 30,
              valid_from: datetime.datetime | None = None) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for `common_name`, valid for `hosts` (server use) and as a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = valid_from or (_now() - _DAY)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + days * _DAY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def write(self, directory: Path) -> tuple[Path, Path]:
        return (_write(directory / "ca.pem", self.cert.public_bytes(serialization.Encoding.PEM)),
                _write(directory / "ca.key", _key_pem(self.key), private=True))

    def write_issued(self, directory: Path, stem: str, common_name: str, hosts: tuple[str, ...] = (),
                     **options) -> tuple[Path, Path]:
        cert, key = self.issue(common_name, hosts, **options)
        return _write(directory / f"{stem}.pem", cert), _write(directory / f"{stem}.key", key, private=True)


@dataclass(frozen=True)
class DevCertificates:
    directory: Path
    ca_cert: Path
    broker_cert: Path
    broker_key: Path


def write_dev_certificates(directory: str | os.PathLike, hosts: tuple[str, ...] = DEFAULT_HOSTS,
                           ca: CertificateAuthority | None = None) -> DevCertificates:
    """A CA (``ca.pem``, ``ca.key``) and one broker certificate for `hosts` (``broker.pem``, ``broker.key``)."""
    directory = Path(directory)
    ca = ca or CertificateAuthority.create()
    ca_cert, _ = ca.write(directory)
    cert, key = ca.write_issued(directory, "broker", "raftka broker", hosts)
    return DevCertificates(directory, ca_cert, cert, key)


@dataclass(frozen=True)
class DevSecurity:
    """TLS and authentication for a local cluster (`LocalCluster(security=...)`, `raftka dev --tls`): the
    certificates under ``<root>/tls`` and a bootstrap superuser ``admin`` whose password is generated once and
    kept in ``<root>/tls/users.txt`` (mode 0600). With ``tls=False`` only authentication is on."""

    root: Path
    tls: bool = True
    admin_user: str = "admin"

    @property
    def directory(self) -> Path:
        return self.root / "tls"

    @property
    def users_file(self) -> Path:
        return self.directory / "users.txt"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def prepare(self) -> DevSecurity:
        """Create the CA, the broker certificate and the admin password unless they exist."""
        if self.tls and not (self.directory / "broker.pem").exists():
            write_dev_certificates(self.directory)
        if not self.users_file.exists():
            _write(self.users_file, f"{self.admin_user}:{secrets.token_urlsafe(18)}\n".encode(), private=True)
        return self

    @property
    def admin_password(self) -> str:
        return self.users_file.read_text().splitlines()[0].partition(":")[2]

    def broker_args(self) -> list[str]:
        args = ["--auth", "required", "--bootstrap-user-file", str(self.users_file)]
        if self.tls:
            args += ["--tls-cert", str(self.directory / "broker.pem"), "--tls-key", str(self.directory / "broker.key"),
                     "--tls-ca", str(self.ca_file)]
        return args

    def client_kwargs(self, user: str | None = None, password: str | None = None) -> dict[str, str | None]:
        """Keyword arguments of the Python client's Producer, Consumer and Admin (the admin by default)."""
        return {"username": user or self.admin_user, "password": password or self.admin_password,
                "ssl_cafile": str(self.ca_file) if self.tls else None}

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None

    def authorization(self, user: str | None = None, password: str | None = None) -> str:
        """An HTTP Basic ``Authorization`` header value."""
        token = f"{user or self.admin_user}:{password or self.admin_password}".encode()
        return "Basic " + base64.b64encode(token).decode()


def main(argv: list[str] | None = None) -> int:
    """``python -m raftka.client.devcerts DIR --host broker1 ...``: a CA and a broker certificate in DIR unless
    they exist (so a restart keeps them), and with ``--admin-password-env VAR`` a bootstrap user file
    ``users.txt`` (``admin:$VAR``) unless it exists. ``--owner UID`` hands the files to that user (the brokers'),
    for a container that runs this as root before the brokers start (docker/compose.yml)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m raftka.client.devcerts", description=main.__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--host", action="append", default=[], help="a name or address the brokers answer on")
    parser.add_argument("--admin-password-env", metavar="VAR", help="write users.txt with admin:$VAR")
    parser.add_argument("--owner", type=int, help="chown the files to this uid (and its gid)")
    args = parser.parse_args(argv)
    directory: Path = args.directory
    if not (directory / "broker.pem").exists():
        write_dev_certificates(directory, tuple(dict.fromkeys(args.host)) or DEFAULT_HOSTS)
        print(f"wrote a CA and a broker certificate for {', '.join(args.host or DEFAULT_HOSTS)} to {directory}")
    users = directory / "users.txt"
    if args.admin_password_env and not users.exists():
        password = os.environ.get(args.admin_password_env, "")
        if not password:
            parser.error(f"${args.admin_password_env} is empty")
        _write(users, f"admin:{password}\n".encode(), private=True)
        print(f"wrote the bootstrap user admin to {users}")
    if args.owner is not None:
        for path in directory.iterdir():
            os.chown(path, args.owner, args.owner)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
