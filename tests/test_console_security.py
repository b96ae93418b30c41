"""The web console on a cluster with TLS and authentication, in headless Chromium: it asks for a login (its own
form, not the browser's), shows only what the user's ACLs allow, says what is refused, and logs out."""

from __future__ import annotations

import pytest
from test_console import Console, browser

from raftka.client import Acl, Admin
from raftka.client.devcerts import DevSecurity
from raftka.client.devcluster import LocalCluster

VIEWER_PASSWORD = "viewer-pw-5b1f0c"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    root = tmp_path_factory.mktemp("console-secured")
    cluster = LocalCluster(1, root, security=DevSecurity(root))
    try:
        cluster.start(timeout=60)
        with Admin(cluster.bootstrap, **cluster.client_kwargs()) as admin:
            admin.create_topic("visible-orders")
            admin.create_topic("hidden-payroll")
            admin.create_user("viewer", VIEWER_PASSWORD)
            admin.create_acls([Acl("User:viewer", "topic", "visible-", "read", pattern_type="prefixed")])
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def ui(secured):
    with browser(secured.url(1), "--ignore-certificate-errors") as console:  # the cluster's throwaway CA
        yield console


def log_in(ui: Console, user: str, password: str) -> None:
    ui.shown('[data-testid="login"]')
    ui.fill('[data-testid="login"]', user=user, password=password)
    ui.find('[data-testid="login"] button').click()


def test_the_console_asks_for_a_login_and_shows_only_what_the_acls_allow(secured, ui):
    ui.open("/topics")
    log_in(ui, "viewer", "not-the-password")
    assert "Wrong user name or password" in ui.text_of('[data-testid="login"] .error')
    log_in(ui, "viewer", VIEWER_PASSWORD)
    assert "User:viewer" in ui.text_of('[data-testid="who"]')
    ui.until(lambda c: "visible-orders" in c.find("main").text, "the permitted topic listed")
    assert "hidden-payroll" not in ui.find("main").text
    ui.screenshot("secured-topics-as-viewer")
    ui.open("/raft")
    assert "DESCRIBE on the cluster" in ui.text_of('[data-testid="raft-refused"]')
    ui.open("/reassignments")
    assert "DESCRIBE on the cluster" in ui.text_of('main [role="alert"]')
    ui.find('[data-testid="who"] button').click()  # log out
    ui.shown('[data-testid="login"]')
    log_in(ui, "admin", secured.security.admin_password)
    ui.open("/topics")
    ui.until(lambda c: "hidden-payroll" in c.find("main").text, "every topic listed for the superuser")
    ui.open("/raft")
    ui.shown('[data-testid="raft-groups"]')
    unexpected = [e for e in ui.console_errors() if " 401 " not in e and " 403 " not in e]
    assert unexpected == []
