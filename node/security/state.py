"""Users and ACLs in the metadata group: the commands that change them and the queries over them.

The metadata state machine (`raftka.node.cluster.metadata`) applies the commands in `SECURITY_OPS`; they keep
``state["security"]``:

    {"version": 7,                      # +1 on every change (caches of the parsed ACLs key on it)
     "users": {"alice": {"SCRAM-SHA-256": {"salt", "iterations", "stored_key", "server_key"}, ...}},
     "acls": [{"principal": "User:bob", "resource_type": "topic", ...}, ...],
     "bootstrapped": true}              # the --bootstrap-user-file users were created once

Only SCRAM credentials are ever stored (never a password). Like every metadata command, these validate
deterministically and answer ``{"ok": ...}`` or ``{"error": code, "message": ...}``.
"""

from __future__ import annotations

import re
from typing import Any

from raftka.node.security.acl import AclBinding, AclError, AclFilter
from raftka.node.security.scram import MAX_ITERATIONS, MECHANISMS, MIN_ITERATIONS

__all__ = ["SECURITY_OPS", "USER_NAME", "acl_bindings", "bootstrapped", "credentials", "security_version", "users"]

USER_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,255}")
INVALID_REQUEST = 42206
USER_NOT_FOUND = 40407


def _security(state: dict) -> dict:
    return state.get("security") or {"version": 0, "users": {}, "acls": [], "bootstrapped": False}


def _changed(sm: Any) -> dict:
    """The security state to change (created on first use), its version bumped."""
    security = sm.state.setdefault("security", _security(sm.state))
    security["version"] += 1
    return security


# ------------------------------------------------------------------ queries

def security_version(state: dict) -> int:
    return _security(state)["version"]


def users(state: dict) -> dict[str, dict[str, dict]]:
    """user -> mechanism -> credential document."""
    return _security(state)["users"]


def credentials(state: dict, user: str) -> dict[str, dict]:
    return users(state).get(user, {})


def acl_bindings(state: dict) -> list[dict]:
    return _security(state)["acls"]


def bootstrapped(state: dict) -> bool:
    return _security(state)["bootstrapped"]


# ----------------------------------------------------------------- commands

def _credential_problem(entry: object) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not USER_NAME.fullmatch(entry["name"]):
        return "user names are 1-255 characters of A-Z a-z 0-9 . _ @ + -"
    if entry.get("mechanism") not in MECHANISMS:
        return f"mechanism must be one of {', '.join(MECHANISMS)}"
    return None


def _alter_scram(sm: Any, cmd: dict) -> dict:
    """Upsert and delete credentials (Kafka's AlterUserScramCredentials): one result per entry, in order."""
    results, seen = [], set()
    current = users(sm.state)
    upserts, deletions = cmd.get("upserts", []), cmd.get("deletions", [])
    valid_upserts, valid_deletions = [], []
    for kind, entries in (("upsert", upserts), ("delete", deletions)):
        for entry in entries:
            problem = _credential_problem(entry)
            name = entry.get("name") if isinstance(entry, dict) else None
            if problem is None and (name, entry["mechanism"]) in seen:
                problem = f"user '{name}' and {entry['mechanism']} appear twice in one request"
            if problem is None and kind == "upsert":
                credential = entry.get("credential")
                if not isinstance(credential, dict) or \
                        not MIN_ITERATIONS <= credential.get("iterations", 0) <= MAX_ITERATIONS or \
                        not all(isinstance(credential.get(k), str) for k in ("salt", "stored_key", "server_key")):
                    problem = f"a credential needs salt, stored_key, server_key and {MIN_ITERATIONS}-" \
                              f"{MAX_ITERATIONS} iterations"
            if problem is None and kind == "delete" and entry["mechanism"] not in current.get(name, {}):
                results.append({"name": name, "error": USER_NOT_FOUND,
                                "message": f"User '{name}' has no {entry['mechanism']} credential."})
                continue
            if problem is not None:
                results.append({"name": name, "error": INVALID_REQUEST, "message": problem})
                continue
            seen.add((name, entry["mechanism"]))
            results.append({"name": name, "error": None})
            (valid_upserts if kind == "upsert" else valid_deletions).append(entry)
    if valid_upserts or valid_deletions:
        all_users = _changed(sm)["users"]
        for entry in valid_upserts:
            all_users.setdefault(entry["name"], {})[entry["mechanism"]] = dict(entry["credential"])
        for entry in valid_deletions:
            mechanisms = all_users.get(entry["name"], {})
            mechanisms.pop(entry["mechanism"], None)
            if not mechanisms:
                all_users.pop(entry["name"], None)
    return {"ok": True, "results": results}


def _delete_user(sm: Any, cmd: dict) -> dict:
    name = cmd.get("name")
    if name not in users(sm.state):
        return {"error": USER_NOT_FOUND, "message": f"User '{name}' not found."}
    del _changed(sm)["users"][name]
    return {"ok": True}


def _create_acls(sm: Any, cmd: dict) -> dict:
    try:
        bindings = [AclBinding.from_json(doc).to_json() for doc in cmd.get("acls", [])]
    except AclError as exc:
        return {"error": INVALID_REQUEST, "message": f"Invalid ACL: {exc}."}
    present = acl_bindings(sm.state)
    new = []
    for doc in bindings:
        if doc not in present and doc not in new:
            new.append(doc)
    if new:
        _changed(sm)["acls"].extend(new)
    return {"ok": True, "created": len(new)}


def _delete_acls(sm: Any, cmd: dict) -> dict:
    """Remove every binding one of the filters matches; answers the removed bindings per filter."""
    try:
        filters = [AclFilter.from_json(doc) for doc in cmd.get("filters", [])]
    except AclError as exc:
        return {"error": INVALID_REQUEST, "message": f"Invalid ACL filter: {exc}."}
    present = [(doc, AclBinding.from_json(doc)) for doc in acl_bindings(sm.state)]
    deleted = [[doc for doc, binding in present if f.matches(binding)] for f in filters]
    gone = [doc for matched in deleted for doc in matched]
    if gone:
        security = _changed(sm)
        security["acls"] = [doc for doc in security["acls"] if doc not in gone]
    return {"ok": True, "deleted": deleted}


def _bootstrap_users(sm: Any, cmd: dict) -> dict:
    """The --bootstrap-user-file users, created once per cluster (never again, even if deleted later)."""
    if bootstrapped(sm.state):
        return {"ok": True, "created": []}
    security = _changed(sm)
    security["bootstrapped"] = True
    created = []
    for name, mechanisms in sorted(cmd.get("users", {}).items()):
        if USER_NAME.fullmatch(name) and name not in security["users"]:
            security["users"][name] = {m: dict(c) for m, c in mechanisms.items() if m in MECHANISMS}
            created.append(name)
    return {"ok": True, "created": created}


SECURITY_OPS = {
    "alter_scram": _alter_scram,
    "delete_user": _delete_user,
    "create_acls": _create_acls,
    "delete_acls": _delete_acls,
    "bootstrap_users": _bootstrap_users,
}
