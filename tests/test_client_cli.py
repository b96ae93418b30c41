"""`raftka` CLI without a cluster: argument parsing, help, input splitting, error messages."""


import click
import pytest
from client_ports import closed_port
from click.testing import CliRunner

from raftka.client.cli import encode_key, main, parse_configs, split_key

COMMANDS = [
    [], ["topics"], ["topics", "create"], ["topics", "list"], ["topics", "describe"], ["topics", "delete"],
    ["topics", "alter"], ["produce"], ["consume"], ["groups"], ["groups", "list"], ["groups", "describe"],
    ["cluster"], ["cluster", "status"], ["dev"],
]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "raftka")
def test_every_command_has_help(runner, args):
    result = runner.invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_parse_configs():
    assert parse_configs(("retention.ms=1000", " cleanup.policy = delete ", "empty=")) == {
        "retention.ms": "1000", "cleanup.policy": "delete", "empty": ""
    }
    with pytest.raises(click.BadParameter, match="NAME=VALUE"):
        parse_configs(("retention.ms",))


def test_encode_key_as_the_rest_proxy_stores_keys():
    assert encode_key(b"user-1", "string", 1) == b"user-1"
    assert encode_key(b'"user-1"', "json", 1) == b'"user-1"'  # the json embedded format keeps the quotes
    assert encode_key(b'{ "id" : 7,  "x": 1.50 }', "json", 1) == b'{"id":7,"x":1.5}'  # compact, as the broker
    assert encode_key(b"dXNlci0x", "base64", 1) == b"user-1"
    with pytest.raises(click.ClickException, match=r'line 3: .*not JSON.*in quotes, e.g. "user-1"'):
        encode_key(b"user-1", "json", 3)
    with pytest.raises(click.ClickException, match="line 4: .*not base64"):
        encode_key(b"user-1!", "base64", 4)


def test_split_key():
    assert split_key(b"k1:v:1", b":", 1) == (b"k1", b"v:1")
    assert split_key(b"no separator", None, 1) == (None, b"no separator")
    assert split_key(b":empty key", b":", 1) == (b"", b"empty key")
    with pytest.raises(click.ClickException, match="line 7 has no key separator"):
        split_key(b"nokey", b":", 7)


def test_unreachable_cluster_lists_the_addresses_tried(runner):
    urls = [f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"]
    result = runner.invoke(main, ["--bootstrap", ",".join(urls), "topics", "list"])
    assert result.exit_code == 1
    assert "Cannot reach the raftka cluster" in result.output
    assert all(url in result.output for url in urls)
    assert "raftka dev" in result.output


def test_bootstrap_comes_from_the_environment(runner):
    url = f"http://127.0.0.1:{closed_port()}"
    result = runner.invoke(main, ["groups", "list"], env={"RAFTKA_BOOTSTRAP": url})
    assert result.exit_code == 1 and url in result.output


def test_bad_bootstrap_is_a_usage_error(runner):
    result = runner.invoke(main, ["--bootstrap", "ftp://x:1", "topics", "list"])
    assert result.exit_code == 2 and "--bootstrap" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["topics", "create", "t", "--partitions", "0"], "--partitions"),
        (["topics", "create", "t", "--config", "novalue"], "NAME=VALUE"),
        (["topics", "alter", "t"], "nothing to alter"),
        (["topics", "create"], "Missing argument 'NAME'"),
        (["produce", "t", "--key-sep", ""], "--key-sep"),
        (["produce", "t", "--file", "/nonexistent/file"], "does not exist"),
        (["consume", "t", "--format", "xml"], "'xml' is not one of"),
        (["consume", "t", "--max", "0"], "--max"),
    ],
)
def test_bad_arguments_are_usage_errors_before_any_network_call(runner, args, message):
    result = runner.invoke(main, ["--bootstrap", f"http://127.0.0.1:{closed_port()}", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_delete_asks_for_confirmation(runner):
    result = runner.invoke(main, ["--bootstrap", f"http://127.0.0.1:{closed_port()}", "topics", "delete", "t"], input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
