"""ACLs and users over Kafka: DescribeAcls, CreateAcls, DeleteAcls, DescribeUserScramCredentials and
AlterUserScramCredentials — adapters over `SecurityService`, so Kafka's admin tools manage the same ACLs and
users as `/acls`, `/users` and `raftka acl|users`.

Describing needs DESCRIBE on the cluster, changing ALTER on the cluster (as in Kafka). Changes are metadata
commands: a broker that does not lead the metadata group relays the request to the leader (`admin`'s relay).
The wire codes of resource types, pattern types, operations and permissions are Kafka's (and `acl`'s enum
values); resource types raftka does not have (transactional ids, delegation tokens) answer INVALID_REQUEST.
AlterUserScramCredentials takes what Kafka's clients send — salt, iterations and the salted password, never
the password — and stores the credential derived from them.
"""

from __future__ import annotations

from typing import Any

from kafka.protocol.admin import (AlterUserScramCredentialsResponse, CreateAclsResponse, DeleteAclsResponse,
                                  DescribeAclsResponse, DescribeUserScramCredentialsResponse)

from raftka.node.errors import ApiError
from raftka.node.kafka.access import denied
from raftka.node.kafka.errors import ErrorCode, error_code
from raftka.node.kafka.handlers.admin import relayed_unless_leader
from raftka.node.kafka.handlers.raw import RawResponse
from raftka.node.security.acl import (AclBinding, AclError, AclFilter, Operation, PatternFilter, PatternType,
                                      Permission, Resource, ResourceType)
from raftka.node.security.scram import MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential

ANY = 1
SCRAM_MECHANISMS = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}  # Kafka's ScramMechanism codes
SCRAM_CODES = {name: code for code, name in SCRAM_MECHANISMS.items()}
CLUSTER = Resource.cluster()


def _enum(kind: Any, code: int) -> Any:
    try:
        return kind(code)
    except ValueError:
        raise AclError(f"{kind.__name__} {code} is not one raftka has") from None


def _binding(c: Any) -> AclBinding:
    """A CreateAcls creation as a binding (AclError when it is not a valid one)."""
    doc = {"principal": c.principal, "host": c.host, "resource_type": _enum(ResourceType, c.resource_type).name,
           "resource_name": c.resource_name, "pattern_type": _enum(PatternType, c.resource_pattern_type).name,
           "operation": _enum(Operation, c.operation).name, "permission": _enum(Permission, c.permission_type).name}
    return AclBinding.from_json(doc)


def _filter_doc(f: Any, version: int) -> dict:
    """A DescribeAcls request or DeleteAcls filter as the JSON filter document `/acls` takes (absent: None)."""
    def named(kind: Any, code: int) -> str | None:
        return None if code == ANY else _enum(kind, code).name

    pattern = f.pattern_type_filter if version >= 1 else PatternFilter.LITERAL.value
    return {"principal": f.principal_filter, "host": f.host_filter,
            "resource_type": named(ResourceType, f.resource_type_filter), "resource_name": f.resource_name_filter,
            "pattern_type": _enum(PatternFilter, pattern).name, "operation": named(Operation, f.operation),
            "permission": named(Permission, f.permission_type)}


def _filter(f: Any, version: int) -> tuple[AclFilter, dict]:
    """The filter and its document (AclError when it is not a valid filter)."""
    doc = {k: v for k, v in _filter_doc(f, version).items() if v is not None}
    return AclFilter.from_json(doc), doc


# ------------------------------------------------------------------------------- ACLs

async def describe_acls(conn: Any, request: Any) -> Any:
    version = request.api_version

    def answer(code: int, message: str | None = None, resources: list | None = None) -> Any:
        return DescribeAclsResponse(version=version, throttle_time_ms=0, error_code=code, error_message=message,
                                    resources=resources or [])

    if (refused := await denied(conn, Operation.DESCRIBE, CLUSTER)) is not None:
        return answer(refused, "Not authorized to describe the cluster.")
    try:
        bindings = await conn.server.services.security.describe_acls(_filter(request.body, version)[0])
    except AclError as exc:
        return answer(ErrorCode.INVALID_REQUEST, str(exc))
    except ApiError as exc:
        return answer(error_code(exc), exc.message)
    grouped: dict[tuple[int, str, int], list[Any]] = {}
    for b in bindings:
        grouped.setdefault((b.resource_type.value, b.resource_name, b.pattern_type.value), []).append(
            DescribeAclsResponse.DescribeAclsResource.AclDescription(
                principal=b.principal, host=b.host, operation=b.operation.value, permission_type=b.permission.value))
    resource = DescribeAclsResponse.DescribeAclsResource
    return answer(ErrorCode.NONE, None, [resource(resource_type=t, resource_name=n, pattern_type=p, acls=acls)
                                         for (t, n, p), acls in grouped.items()])


async def create_acls(conn: Any, request: Any) -> Any:
    result = CreateAclsResponse.AclCreationResult
    creations = list(request.body.creations)

    def answer(codes: list[tuple[int, str | None]]) -> Any:
        return CreateAclsResponse(version=request.api_version, throttle_time_ms=0,
                                  results=[result(error_code=c, error_message=m) for c, m in codes])

    if (refused := await denied(conn, Operation.ALTER, CLUSTER)) is not None:
        return answer([(refused, "Not authorized to alter the cluster.")] * len(creations))
    routed = await relayed_unless_leader(conn, request)
    if isinstance(routed, RawResponse):
        return routed
    if routed is not None:
        return answer([(routed, "this broker does not lead the metadata group")] * len(creations))
    codes: list[tuple[int, str | None]] = []
    valid = []
    for c in creations:
        try:
            valid.append(_binding(c))
            codes.append((ErrorCode.NONE, None))
        except AclError as exc:
            codes.append((ErrorCode.INVALID_REQUEST, str(exc)))
    if valid:
        try:
            await conn.server.services.security.create_acls(valid)
        except ApiError as exc:
            codes = [(error_code(exc), exc.message) if code == ErrorCode.NONE else (code, m) for code, m in codes]
    return answer(codes)


async def delete_acls(conn: Any, request: Any) -> Any:
    version = request.api_version
    filter_result = DeleteAclsResponse.DeleteAclsFilterResult
    matching = filter_result.DeleteAclsMatchingAcl
    filters = list(request.body.filters)

    def failed(code: int, message: str) -> Any:
        return filter_result(error_code=code, error_message=message, matching_acls=[])

    def answer(results: list[Any]) -> Any:
        return DeleteAclsResponse(version=version, throttle_time_ms=0, filter_results=results)

    if (refused := await denied(conn, Operation.ALTER, CLUSTER)) is not None:
        return answer([failed(refused, "Not authorized to alter the cluster.")] * len(filters))
    routed = await relayed_unless_leader(conn, request)
    if isinstance(routed, RawResponse):
        return routed
    if routed is not None:
        return answer([failed(routed, "this broker does not lead the metadata group")] * len(filters))
    parsed: list[tuple[AclFilter, dict] | str] = []
    for f in filters:
        try:
            parsed.append(_filter(f, version))
        except AclError as exc:
            parsed.append(str(exc))
    usable = [p for p in parsed if not isinstance(p, str)]
    try:
        removed = iter(await conn.server.services.security.delete_acls([f for f, _ in usable],
                                                                       [doc for _, doc in usable]))
    except ApiError as exc:
        return answer([failed(error_code(exc), exc.message)] * len(filters))
    results = []
    for p in parsed:
        if isinstance(p, str):
            results.append(failed(ErrorCode.INVALID_REQUEST, p))
            continue
        results.append(filter_result(error_code=ErrorCode.NONE, error_message=None, matching_acls=[
            matching(error_code=ErrorCode.NONE, error_message=None, resource_type=b.resource_type.value,
                     resource_name=b.resource_name, pattern_type=b.pattern_type.value, principal=b.principal,
                     host=b.host, operation=b.operation.value, permission_type=b.permission.value)
            for b in next(removed)]))
    return answer(results)


# ------------------------------------------------------------------------------ users

async def describe_user_scram_credentials(conn: Any, request: Any) -> Any:
    response = DescribeUserScramCredentialsResponse
    result = response.DescribeUserScramCredentialsResult
    info = result.CredentialInfo

    def answer(code: int, message: str | None = None, results: list | None = None) -> Any:
        return response(version=request.api_version, throttle_time_ms=0, error_code=code, error_message=message,
                        results=results or [])

    if (refused := await denied(conn, Operation.DESCRIBE, CLUSTER)) is not None:
        return answer(refused, "Not authorized to describe the cluster.")
    asked = [u.name for u in request.body.users or []] or None  # none named: every user (Kafka's rule)
    try:
        described = await conn.server.services.security.describe_users(asked)
    except ApiError as exc:
        return answer(error_code(exc), exc.message)
    results = []
    for name in described if asked is None else asked:
        if name not in described:
            results.append(result(user=name, error_code=ErrorCode.RESOURCE_NOT_FOUND,
                                  error_message="Attempt to describe a user credential that does not exist",
                                  credential_infos=[]))
            continue
        results.append(result(user=name, error_code=ErrorCode.NONE, error_message=None, credential_infos=[
            info(mechanism=SCRAM_CODES[c["mechanism"]], iterations=c["iterations"]) for c in described[name]]))
    return answer(ErrorCode.NONE, None, results)


def _user_codes(entries: list[tuple[str, int, str | None]]) -> dict[str, tuple[int, str | None]]:
    """One result per user: its first error, else NONE (Kafka answers per user)."""
    out: dict[str, tuple[int, str | None]] = {}
    for name, code, message in entries:
        if name not in out or out[name][0] == ErrorCode.NONE:
            out[name] = (code, message)
    return out


async def alter_user_scram_credentials(conn: Any, request: Any) -> Any:
    body = request.body
    result = AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult
    names = list(dict.fromkeys([d.name for d in body.deletions] + [u.name for u in body.upsertions]))

    def answer(codes: dict[str, tuple[int, str | None]]) -> Any:
        return AlterUserScramCredentialsResponse(version=request.api_version, throttle_time_ms=0, results=[
            result(user=n, error_code=codes[n][0], error_message=codes[n][1]) for n in names])

    if (refused := await denied(conn, Operation.ALTER, CLUSTER)) is not None:
        return answer({n: (refused, "Not authorized to alter the cluster.") for n in names})
    routed = await relayed_unless_leader(conn, request)
    if isinstance(routed, RawResponse):
        return routed
    if routed is not None:
        return answer({n: (routed, "this broker does not lead the metadata group") for n in names})
    checked: list[tuple[str, int, str | None]] = []
    upserts, deletions = [], []
    for u in body.upsertions:
        if u.mechanism not in SCRAM_MECHANISMS:
            checked.append((u.name, ErrorCode.UNSUPPORTED_SASL_MECHANISM, "SCRAM-SHA-256 or SCRAM-SHA-512 only"))
        elif not MIN_ITERATIONS <= u.iterations <= MAX_ITERATIONS:
            checked.append((u.name, ErrorCode.UNACCEPTABLE_CREDENTIAL,
                            f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"))
        elif not u.salt or not u.salted_password:
            checked.append((u.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "a salt and a salted password are needed"))
        else:
            mechanism = SCRAM_MECHANISMS[u.mechanism]
            upserts.append((u.name, ScramCredential.from_salted_password(mechanism, u.salt, u.iterations,
                                                                         u.salted_password)))
    for d in body.deletions:
        if d.mechanism not in SCRAM_MECHANISMS:
            checked.append((d.name, ErrorCode.UNSUPPORTED_SASL_MECHANISM, "SCRAM-SHA-256 or SCRAM-SHA-512 only"))
        else:
            deletions.append((d.name, SCRAM_MECHANISMS[d.mechanism]))
    if upserts or deletions:
        try:
            outcomes = await conn.server.services.security.alter_scram(upserts, deletions)
        except ApiError as exc:
            return answer({n: (error_code(exc), exc.message) for n in names})
        for outcome in outcomes:
            code = {None: ErrorCode.NONE, 40407: ErrorCode.RESOURCE_NOT_FOUND}.get(
                outcome["error"], ErrorCode.UNACCEPTABLE_CREDENTIAL)
            checked.append((outcome["name"], code, outcome.get("message")))
    return answer(_user_codes(checked))


__all__ = ["alter_user_scram_credentials", "create_acls", "delete_acls", "describe_acls",
           "describe_user_scram_credentials"]
