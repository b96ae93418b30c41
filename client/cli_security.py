"""``raftka users`` and ``raftka acl``: manage the users and ACLs of a cluster with authentication.

Examples::

    raftka users create alice                 # asks for the password twice
    raftka users list
    raftka acl add --allow User:alice --operation read --operation describe --topic orders
    raftka acl add --allow User:alice --operation read --group billing
    raftka acl add --deny User:eve --operation all --topic '*'
    raftka acl add --allow User:etl --operation write --topic logs- --prefixed
    raftka acl list --topic orders --match    # everything that applies to topic orders
    raftka acl remove --principal User:alice --topic orders
"""

from __future__ import annotations

import click
from rich.table import Table

from raftka.client.admin_security import Acl
from raftka.client.cli_common import ErrorsGroup, admin_client, stdout

__all__ = ["acl", "users"]

_OPERATIONS = ["all", "read", "write", "create", "delete", "alter", "describe", "describe_configs", "alter_configs",
               "idempotent_write", "cluster_action"]


@click.group(cls=ErrorsGroup)
def users() -> None:
    """Create, list and delete users (SCRAM-SHA-256/512 credentials; passwords are never stored)."""


@users.command("create")
@click.argument("name")
@click.option("--password", "new_password", envvar="RAFTKA_NEW_PASSWORD",
              help="The new user's password (env RAFTKA_NEW_PASSWORD; asked for when not given).")
@click.option("--mechanism", "mechanisms", multiple=True, type=click.Choice(["SCRAM-SHA-256", "SCRAM-SHA-512"]),
              help="Only these SCRAM mechanisms (default: both).")
@click.pass_context
def users_create(ctx: click.Context, name: str, new_password: str | None, mechanisms: tuple[str, ...]) -> None:
    """Create user NAME, or set a new password for it."""
    if new_password is None:
        new_password = click.prompt(f"New password for {name}", hide_input=True, confirmation_prompt=True, err=True)
    with admin_client(ctx) as admin:
        created = admin.create_user(name, new_password, list(mechanisms) or None)
    stdout().print(f"{'Created user' if created else 'Changed the password of'} {name}.")


@users.command("delete")
@click.argument("name")
@click.pass_context
def users_delete(ctx: click.Context, name: str) -> None:
    """Delete user NAME (its ACLs stay until removed)."""
    with admin_client(ctx) as admin:
        admin.delete_user(name)
    stdout().print(f"Deleted user {name}.")


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users and their SCRAM mechanisms."""
    with admin_client(ctx) as admin:
        described = admin.list_users()
    if not described:
        stdout().print("No users. Create one with: raftka users create NAME")
        return
    table = Table("User", "Mechanisms")
    for name, mechanisms in described.items():
        table.add_row(name, ", ".join(f"{m} ({i} iterations)" for m, i in mechanisms))
    stdout().print(table)


@click.group(cls=ErrorsGroup)
def acl() -> None:
    """Add, list and remove ACLs (Kafka's model: deny wins; no ACL, no access; superusers pass)."""


def _resource_options(command):
    for option in reversed([
        click.option("--topic", help="A topic name ('*' for all topics; a prefix with --prefixed)."),
        click.option("--group", help="A consumer group name ('*' for all groups; a prefix with --prefixed)."),
        click.option("--cluster", is_flag=True, help="The cluster (topic creation, users, ACLs, metrics)."),
        click.option("--prefixed", is_flag=True, help="--topic/--group is a name prefix."),
    ]):
        command = option(command)
    return command


def _resource(topic: str | None, group: str | None, cluster: bool, required: bool) -> tuple[str | None, str | None]:
    chosen = [(kind, name) for kind, name in (("topic", topic), ("group", group)) if name is not None]
    if cluster:
        chosen.append(("cluster", "kafka-cluster"))
    if len(chosen) > 1:
        raise click.UsageError("give one of --topic, --group, --cluster")
    if not chosen:
        if required:
            raise click.UsageError("give one of --topic, --group, --cluster")
        return None, None
    return chosen[0]


def _render(bindings: list[Acl]) -> None:
    if not bindings:
        stdout().print("No ACLs.")
        return
    table = Table("Principal", "Permission", "Operation", "Resource", "Name", "Pattern", "Host")
    for b in bindings:
        table.add_row(b.principal, b.permission, b.operation, b.resource_type, b.resource_name, b.pattern_type,
                      b.host)
    stdout().print(table)


@acl.command("add")
@click.option("--allow", "allowed", metavar="PRINCIPAL", multiple=True, help="Allow User:NAME (or User:*).")
@click.option("--deny", "denied", metavar="PRINCIPAL", multiple=True, help="Deny User:NAME (or User:*).")
@click.option("--operation", "operations", multiple=True, required=True, type=click.Choice(_OPERATIONS),
              help="Repeatable.")
@_resource_options
@click.option("--host", default="*", show_default=True, help="Client address the ACL applies to.")
@click.pass_context
def acl_add(ctx: click.Context, allowed: tuple[str, ...], denied: tuple[str, ...], operations: tuple[str, ...],
            topic: str | None, group: str | None, cluster: bool, prefixed: bool, host: str) -> None:
    """Allow or deny principals operations on a topic, group or the cluster."""
    if not allowed and not denied:
        raise click.UsageError("give --allow PRINCIPAL and/or --deny PRINCIPAL")
    resource_type, name = _resource(topic, group, cluster, required=True)
    bindings = [Acl(principal, resource_type, name, op, permission, "prefixed" if prefixed else "literal", host)
                for permission, principals in (("allow", allowed), ("deny", denied))
                for principal in principals for op in operations]
    with admin_client(ctx) as admin:
        created = admin.create_acls(bindings)
    stdout().print(f"Added {created} ACL(s)" + (f" ({len(bindings) - created} existed already)."
                                                   if created < len(bindings) else "."))
    _render(bindings)


@acl.command("list")
@click.option("--principal", help="Only ACLs of this principal.")
@_resource_options
@click.option("--match", is_flag=True, help="Every ACL that applies to the named resource (wildcards, prefixes).")
@click.pass_context
def acl_list(ctx: click.Context, principal: str | None, topic: str | None, group: str | None, cluster: bool,
             prefixed: bool, match: bool) -> None:
    """List ACLs, all of them or those of a principal or resource."""
    resource_type, name = _resource(topic, group, cluster, required=False)
    pattern = "match" if match else "prefixed" if prefixed else None
    with admin_client(ctx) as admin:
        _render(admin.list_acls(principal=principal, resource_type=resource_type, resource_name=name,
                                pattern_type=pattern))


@acl.command("remove")
@click.option("--principal", help="ACLs of this principal.")
@click.option("--operation", "operations", multiple=True, type=click.Choice(_OPERATIONS),
              help="Only these operations (repeatable; default: any).")
@click.option("--permission", type=click.Choice(["allow", "deny"]), help="Only allow or only deny ACLs.")
@_resource_options
@click.pass_context
def acl_remove(ctx: click.Context, principal: str | None, operations: tuple[str, ...], permission: str | None,
               topic: str | None, group: str | None, cluster: bool, prefixed: bool) -> None:
    """Remove the ACLs that match (at least a principal or a resource must be given)."""
    resource_type, name = _resource(topic, group, cluster, required=False)
    if principal is None and resource_type is None:
        raise click.UsageError("give --principal and/or one of --topic, --group, --cluster")
    removed: list[Acl] = []
    with admin_client(ctx) as admin:
        for op in operations or (None,):
            removed += admin.delete_acls(principal=principal, resource_type=resource_type, resource_name=name,
                                         pattern_type="prefixed" if prefixed else None, operation=op,
                                         permission=permission)
    stdout().print(f"Removed {len(removed)} ACL(s).")
    _render(removed)
