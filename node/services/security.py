"""`SecurityService`: authentication, the authorization decision, and users and ACLs, for every front end.

* **Authentication.** `login` checks a user name and password (HTTP Basic, SASL/PLAIN) against the user's
  SCRAM credential in the metadata group; `credential` gives a SCRAM exchange (SASL/SCRAM) what it needs. A
  source address that failed too often is refused before anything is checked (`LoginLimiter`); failures are
  counted in /metrics. A verified password is remembered as an HMAC under a per-process random key (never the
  password), so repeated requests do not pay the key derivation; a changed or deleted credential no longer
  matches the remembered one.
* **Authorization.** `allowed(principal, host, operation, resource)` is the one decision: with ``--auth none``
  everything is allowed; superusers (``--superusers``, bootstrap users, and brokers acting for themselves)
  are allowed everything; otherwise Kafka's ACL rules (`raftka.node.security.acl`). `check` raises the
  front-end-neutral error for the resource type (topic, group, cluster).
* **Users and ACLs** are metadata commands (`raftka.node.security.state`): written on the metadata leader
  (elsewhere `ServedElsewhere`), read from this broker's replica once it is current.

A decision is made on this broker's metadata replica, which may trail the leader by a moment: a login or a
decision that fails is retried once after catching up with the leader (a read index), so a user or ACL just
created through another broker is honoured at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable

from raftka.node.cluster.broker import Broker
from raftka.node.cluster.metadata import command
from raftka.node.errors import (ApiError, AuthenticationRequired, ClusterAuthorizationFailed,
                                GroupAuthorizationFailed, InvalidRequest, NotLeader, TooManyLoginFailures,
                                TopicAuthorizationFailed, UserNotFound)
from raftka.node.metrics import MetricsRegistry
from raftka.node.security.acl import AclBinding, AclFilter, AclIndex, Operation, Resource, ResourceType
from raftka.node.security.limiter import LoginLimiter
from raftka.node.security.scram import DEFAULT_ITERATIONS, MAX_ITERATIONS, MECHANISMS, MIN_ITERATIONS, \
    ScramCredential
from raftka.node.security.settings import read_bootstrap_users
from raftka.node.security.state import USER_NAME, acl_bindings, bootstrapped, credentials, security_version, users
from raftka.node.services.routing import elsewhere, metadata_fresh_here, metadata_leader_here

log = logging.getLogger("raftka.node.security")

__all__ = ["ANONYMOUS", "SecurityService"]

ANONYMOUS = "User:ANONYMOUS"  # the principal of every request when --auth none (as in Kafka)
VERIFIED_CACHE_SIZE = 10_000
BOOTSTRAP_RETRY_S = 0.5
MAX_PASSWORD_BYTES = 1024


class SecurityService:
    def __init__(self, broker: Broker, metrics: MetricsRegistry):
        self.broker = broker
        self.settings = broker.config.security
        self.limiter = LoginLimiter(self.settings.login_failure_limit)
        self._verified: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()  # (user, HMAC(password)) -> key
        self._cache_key = os.urandom(32)
        self._index_version, self._index = -1, AclIndex(())
        self._failures = metrics.counter("raftka_auth_failures_total", "Failed authentications (wrong or unknown "
                                         "credentials, bad signatures, malformed exchanges).", ("listener",))
        self._limited = metrics.counter("raftka_auth_rate_limited_total", "Logins refused unchecked: the source "
                                        "address failed too often within a minute.", ("listener",))
        self._denied = metrics.counter("raftka_authorization_denied_total", "Requests refused by the ACLs.",
                                       ("listener", "resource_type"))
        self._task: asyncio.Task | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.auth_required

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self.enabled and not self.settings.superusers and not users(self.broker.metadata.state):
            log.warning("authentication is required but no users exist and no superusers are configured: give "
                        "--bootstrap-user-file (or --superusers with client certificates) to let anyone in")
        if self.settings.auth_warning:
            log.warning("%s", self.settings.auth_warning)
        if self.settings.bootstrap_user_file is not None:
            self._task = asyncio.create_task(self._bootstrap_users(), name="bootstrap-users")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _bootstrap_users(self) -> None:
        """On the metadata leader: create the bootstrap file's users, once per cluster."""
        broker = self.broker
        while not bootstrapped(broker.metadata.state):
            if broker.is_metadata_leader():
                try:
                    passwords = read_bootstrap_users(self.settings.bootstrap_user_file)
                except ValueError as exc:
                    log.error("bootstrap users not created: %s", exc)
                    return
                docs = {name: {c.mechanism: c.to_json() for c in await _credentials(password)}
                        for name, password in passwords.items()}
                try:
                    result = await broker.propose_metadata(command("bootstrap_users", users=docs))
                    if result.get("created"):
                        log.info("created the bootstrap users %s", ", ".join(result["created"]))
                except ApiError as exc:
                    log.info("bootstrap users not created yet (%s); retrying", exc.message)
            await asyncio.sleep(BOOTSTRAP_RETRY_S)

    # ---------------------------------------------------------- authentication

    def check_address(self, address: str, listener: str) -> None:
        """TooManyLoginFailures when `address` failed to log in too often lately."""
        if self.limiter.blocked(address):
            self._limited.labels(listener).inc()
            raise TooManyLoginFailures()

    def login_failed(self, address: str, listener: str) -> None:
        self.limiter.failed(address)
        self._failures.labels(listener).inc()

    def credential(self, user: str, mechanism: str) -> ScramCredential | None:
        doc = credentials(self.broker.metadata.state, user).get(mechanism)
        return None if doc is None else ScramCredential.from_json(mechanism, doc)

    async def login(self, user: str, password: bytes, address: str, listener: str) -> str:
        """The principal ``User:<user>`` if the password is right; AuthenticationRequired (or
        TooManyLoginFailures) otherwise."""
        self.check_address(address, listener)
        seen = self.broker.metadata.applied_index  # checking a password awaits: the user may be applied meanwhile
        if await self._password_matches(user, password) or (await self.catch_up(seen)
                                                            and await self._password_matches(user, password)):
            return f"User:{user}"
        self.login_failed(address, listener)
        raise AuthenticationRequired()

    async def _password_matches(self, user: str, password: bytes) -> bool:
        if len(password) > MAX_PASSWORD_BYTES or not USER_NAME.fullmatch(user):
            return False
        mechanisms = credentials(self.broker.metadata.state, user)
        mechanism = "SCRAM-SHA-256" if "SCRAM-SHA-256" in mechanisms else "SCRAM-SHA-512"
        credential = self.credential(user, mechanism)
        key = (user, hmac.new(self._cache_key, password, hashlib.sha256).digest())
        if credential is not None and hmac.compare_digest(self._verified.get(key, b""), credential.stored_key):
            self._verified.move_to_end(key)
            return True
        if credential is None:  # the same work as for a real user, so timing does not tell who exists
            await asyncio.to_thread(ScramCredential.from_password, "SCRAM-SHA-256", "x", DEFAULT_ITERATIONS, b"s")
            return False
        if not await asyncio.to_thread(credential.verify_password, password):
            return False
        self._verified[key] = credential.stored_key
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return True

    async def catch_up(self, seen: int | None = None) -> bool:
        """Catch this broker's metadata replica up with the leader; False if it cannot or nothing was applied
        since index `seen` (default: now)."""
        before = self.broker.metadata.applied_index if seen is None else seen
        try:
            await metadata_fresh_here(self.broker)
        except NotLeader:
            return False
        return self.broker.metadata.applied_index != before

    # ----------------------------------------------------------- authorization

    def is_superuser(self, principal: str) -> bool:
        return principal.startswith("Broker:") or principal in self.settings.superusers

    def _acls(self) -> AclIndex:
        state = self.broker.metadata.state
        version = security_version(state)
        if version != self._index_version:
            self._index = AclIndex(AclBinding.from_json(doc) for doc in acl_bindings(state))
            self._index_version = version
        return self._index

    def allowed(self, principal: str, host: str, operation: Operation, resource: Resource) -> bool:
        if not self.enabled or self.is_superuser(principal):
            return True
        return self._acls().allowed(principal, host, operation, resource)

    async def check(self, principal: str, host: str, operation: Operation, resource: Resource,
                    listener: str = "http") -> None:
        """Raise Topic/Group/ClusterAuthorizationFailed unless allowed (after catching up once)."""
        if self.allowed(principal, host, operation, resource):
            return
        if await self.catch_up() and self.allowed(principal, host, operation, resource):
            return
        self._denied.labels(listener, resource.type.name.lower()).inc()
        raise denial(operation, resource)

    async def check_any_topic(self, principal: str, host: str, operation: Operation, listener: str = "http") -> None:
        """Allowed to `operation` some topic (Kafka's rule for a new idempotent producer id: WRITE on any topic)."""
        def ok() -> bool:
            return not self.enabled or self.is_superuser(principal) or \
                self._acls().allowed_on_some(principal, host, operation, ResourceType.TOPIC)
        if ok() or (await self.catch_up() and ok()):
            return
        self._denied.labels(listener, "cluster").inc()
        raise ClusterAuthorizationFailed(f"{_verb(operation)} any topic in")

    def visible(self, principal: str, host: str, resource_type: ResourceType, names: Iterable[str],
                operation: Operation = Operation.DESCRIBE) -> list[str]:
        """The names among `names` the principal may `operation` (listings show only those, as in Kafka)."""
        return [n for n in names if self.allowed(principal, host, operation, Resource(resource_type, n))]

    # ------------------------------------------------------------------- users

    async def set_password(self, name: object, password: object, mechanisms: Iterable[str] = tuple(MECHANISMS),
                           iterations: int = DEFAULT_ITERATIONS) -> dict:
        """Create the user or change its password (a SCRAM credential per mechanism; the password is not kept)."""
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            raise InvalidRequest("User names are 1-255 characters of A-Z a-z 0-9 . _ @ + -.")
        if not isinstance(password, str) or not password or len(password.encode()) > MAX_PASSWORD_BYTES:
            raise InvalidRequest(f"The password must be a non-empty string of at most {MAX_PASSWORD_BYTES} bytes.")
        mechanisms = list(mechanisms)
        if not mechanisms or any(not isinstance(m, str) or m not in MECHANISMS for m in mechanisms) or \
                len(set(mechanisms)) != len(mechanisms):
            raise InvalidRequest(f"Mechanisms must be distinct ones of {', '.join(MECHANISMS)}.")
        if type(iterations) is not int or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise InvalidRequest(f"Iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}.")
        await metadata_leader_here(self.broker)
        existed = bool(credentials(self.broker.metadata.state, name))
        made = await _credentials(password, mechanisms, iterations)
        results = await self.alter_scram([(name, c) for c in made], [])
        _raise_first(results)
        return {"name": name, "mechanisms": mechanisms, "created": not existed}

    async def alter_scram(self, upserts: list[tuple[str, ScramCredential]], deletions: list[tuple[str, str]]) \
            -> list[dict]:
        """Kafka's AlterUserScramCredentials: one result ``{"name", "error", "message"}`` per entry, in order."""
        cmd = command("alter_scram",
                      upserts=[{"name": n, "mechanism": c.mechanism, "credential": c.to_json()} for n, c in upserts],
                      deletions=[{"name": n, "mechanism": m} for n, m in deletions])
        return (await self._write(cmd))["results"]

    async def delete_user(self, name: str) -> None:
        await self._write(command("delete_user", name=name))

    async def describe_users(self, names: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """user -> [{"mechanism", "iterations"}] (never a key or salt); unknown names are left out."""
        await metadata_fresh_here(self.broker)
        everyone = users(self.broker.metadata.state)
        chosen = sorted(everyone) if names is None else [n for n in names if n in everyone]
        return {n: [{"mechanism": m, "iterations": c["iterations"]} for m, c in sorted(everyone[n].items())]
                for n in chosen}

    # -------------------------------------------------------------------- ACLs

    async def create_acls(self, bindings: list[AclBinding]) -> int:
        """Add bindings (existing ones are kept once); answers how many were new."""
        return (await self._write(command("create_acls", acls=[b.to_json() for b in bindings])))["created"]

    async def delete_acls(self, filters: list[AclFilter], filter_docs: list[dict]) -> list[list[AclBinding]]:
        """Remove every binding a filter matches; the removed bindings per filter."""
        result = await self._write(command("delete_acls", filters=filter_docs))
        return [[AclBinding.from_json(doc) for doc in matched] for matched in result["deleted"]]

    async def describe_acls(self, acl_filter: AclFilter) -> list[AclBinding]:
        await metadata_fresh_here(self.broker)
        return [b for b in self._acls().bindings if acl_filter.matches(b)]

    async def _write(self, cmd: bytes) -> dict:
        await metadata_leader_here(self.broker)
        try:
            return await self.broker.propose_metadata(cmd)
        except NotLeader as exc:
            raise elsewhere(self.broker, exc.leader_id, "the metadata group") from None


def _verb(operation: Operation) -> str:
    return operation.name.lower().replace("_", " ")


def denial(operation: Operation, resource: Resource) -> ApiError:
    """The error for a denied operation, by resource type."""
    if resource.type is ResourceType.TOPIC:
        return TopicAuthorizationFailed(resource.name, _verb(operation))
    if resource.type is ResourceType.GROUP:
        return GroupAuthorizationFailed(resource.name, _verb(operation))
    return ClusterAuthorizationFailed(_verb(operation))


def _raise_first(results: list[dict]) -> None:
    for result in results:
        if result.get("error") == 40407:
            raise UserNotFound(result["message"])
        if result.get("error") is not None:
            raise InvalidRequest(result["message"])


async def _credentials(password: str, mechanisms: Iterable[str] = tuple(MECHANISMS),
                       iterations: int = DEFAULT_ITERATIONS) -> list[ScramCredential]:
    return [await asyncio.to_thread(ScramCredential.from_password, m, password, iterations) for m in mechanisms]
