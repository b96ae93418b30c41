"""Broker configuration (raftka.node.config): sources, precedence, validation messages."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.client.devcerts import write_dev_certificates
from raftka.node.cluster.topics import TopicConfig
from raftka.node.config import Address, ConfigError, Peer, build_parser, load_config

SECRET = "s3cret-s3cret-s3cret"
PEERS = "1=b1:8080:9090,2=b2:8080:9090,3=b3:8080:9090"


def load(*argv: str, env: dict | None = None):
    return load_config(list(argv), env or {})


def base(*extra: str) -> list[str]:
    return ["--id", "2", "--data-dir", "/srv/raftka", "--peers", PEERS, "--cluster-secret", SECRET, *extra]


def error_of(*argv: str, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(*argv, env=env)
    return str(info.value)


# --- happy paths ---------------------------------------------------------------------


def test_single_broker_defaults(tmp_path):
    cfg = load("--id", "1", "--data-dir", str(tmp_path))
    assert cfg.broker_id == 1 and cfg.data_dir == tmp_path
    assert cfg.listen == Address("127.0.0.1", 8080) and cfg.raft_listen == Address("127.0.0.1", 9090)
    assert cfg.peers == (Peer(1, "127.0.0.1", 8080, 9090),)
    assert cfg.cluster_secret is None
    assert (cfg.election_timeout_ms, cfg.heartbeat_ms, cfg.max_request_bytes) == (800, 100, 16 * 1024 * 1024)
    assert (cfg.default_partitions, cfg.default_replication_factor, cfg.log_level) == (1, 1, "INFO")
    assert cfg.topic_defaults == TopicConfig()


def test_single_broker_on_ephemeral_ports(tmp_path):
    cfg = load("--id", "7", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--raft-listen", "127.0.0.1:0")
    assert cfg.listen.port == 0 and cfg.raft_listen.port == 0


def test_three_broker_cluster():
    cfg = load(*base())
    assert cfg.peer_ids == (1, 2, 3)
    assert cfg.self_peer == Peer(2, "b2", 8080, 9090)
    assert cfg.listen == Address("b2", 8080) and cfg.raft_listen == Address("b2", 9090)
    assert cfg.peer(3).http_url == "http://b3:8080" and cfg.peer(3).raft_address == ("b3", 9090)
    assert cfg.cluster_secret == SECRET.encode()
    assert cfg.default_replication_factor == 3
    with pytest.raises(KeyError):
        cfg.peer(9)


def test_listen_can_differ_from_the_advertised_peer_address():
    cfg = load(*base("--listen", "0.0.0.0:8080", "--raft-listen", "[::]:9090"))
    assert cfg.listen == Address("0.0.0.0", 8080) and str(cfg.raft_listen) == "[::]:9090"


def test_peers_are_sorted_and_accept_ipv6_and_spaces():
    cfg = load(
        "--id",
        "1",
        "--data-dir",
        "d",
        "--cluster-secret",
        SECRET,
        "--peers",
        " 3=h3:1:2 , 1=[::1]:80:81, 2=broker_2.local:1:2",
    )
    assert cfg.peer_ids == (1, 2, 3)
    assert cfg.peer(1).http_url == "http://[::1]:80"
    assert cfg.peer(2).host == "broker_2.local"
    assert cfg.data_dir == Path("d").absolute()


def test_tunables(tmp_path):
    cfg = load(
        *base(
            "--election-timeout-ms", "300", "--heartbeat-ms", "50", "--max-request-bytes", "2000000",
            "--default-partitions", "6", "--default-replication-factor", "1", "--log-level", "debug",
            "--default-retention-ms", "60000", "--default-retention-bytes", "1000000",
            "--default-segment-bytes", "4096", "--default-max-message-bytes", "1000",
        )
    )  # fmt: skip
    assert (cfg.election_timeout_ms, cfg.heartbeat_ms, cfg.max_request_bytes) == (300, 50, 2_000_000)
    assert (cfg.default_partitions, cfg.default_replication_factor, cfg.log_level) == (6, 1, "DEBUG")
    assert cfg.topic_defaults == TopicConfig(
        retention_ms=60000, retention_bytes=1_000_000, segment_bytes=4096, max_message_bytes=1000
    )


def test_secret_is_not_in_repr():
    assert SECRET not in repr(load(*base()))


# --- sources and precedence ------------------------------------------------------------

# One valid value per setting, as a flag/env string and as a native TOML value.
SAMPLES = {
    "id": ("2", 2),
    "data-dir": ("/srv/x", "/srv/x"),
    "listen": ("0.0.0.0:8081", "0.0.0.0:8081"),
    "raft-listen": ("0.0.0.0:9091", "0.0.0.0:9091"),
    "peers": (PEERS, PEERS),
    "cluster-secret": (SECRET, SECRET),
    "election-timeout-ms": ("700", 700),
    "heartbeat-ms": ("70", 70),
    "max-request-bytes": ("3000000", 3000000),
    "default-partitions": ("4", 4),
    "default-replication-factor": ("1", 1),
    "default-retention-ms": ("1000", 1000),
    "default-retention-bytes": ("2000", 2000),
    "default-segment-bytes": ("8192", 8192),
    "default-max-message-bytes": ("4000", 4000),
    "log-level": ("WARNING", "WARNING"),
    "stop-when-fd-closes": ("7", 7),
    "kafka-listen": ("0.0.0.0:9092", "0.0.0.0:9092"),
    "kafka-advertise": ("kafka.example:19092", "kafka.example:19092"),
    "min-free-bytes": ("4194304", 4194304),
    "advertised-host": ("b2.example", "b2.example"),
    "rack": ("zone-a", "zone-a"),
    "metadata-voters": ("5", 5),
    "reassignment-max-bytes-per-sec": ("1000000", 1000000),
    "inline-fsync-max-us": ("0", 0),
    "leader-fsync-delay-ms": ("20", 20),
}


def test_join_takes_its_own_addresses_and_no_peers():
    config = load("--id", "4", "--data-dir", "/d", "--join", "127.0.0.1:9091", "--listen", "0.0.0.0:8084",
                  "--raft-listen", "0.0.0.0:9094", "--advertised-host", "b4", "--rack", "r2",
                  "--cluster-secret", SECRET)
    assert config.join_urls == ["http://127.0.0.1:9091"]
    assert config.peers == (Peer(4, "b4", 8084, 9094),) and config.rack == "r2"
    assert config.default_replication_factor is None  # auto: from the brokers the cluster has
    assert config.metadata_voters is None and config.reassignment_max_bytes_per_sec > 0


def test_a_broker_serving_tls_joins_over_https(tmp_path):
    certs = write_dev_certificates(tmp_path / "tls")
    config = load("--id", "4", "--data-dir", "/d", "--join", "b1:9091,http://b2:9091", "--listen", "127.0.0.1:8084",
                  "--raft-listen", "127.0.0.1:9094", "--cluster-secret", SECRET, "--tls-cert", str(certs.broker_cert),
                  "--tls-key", str(certs.broker_key))
    assert config.join_urls == ["https://b1:9091", "http://b2:9091"]  # a scheme given is kept
    assert config.self_peer.http_url == "https://127.0.0.1:8084"


def toml_text(values: dict) -> str:
    lines = []
    for key, value in values.items():
        if isinstance(value, list):
            value = "[" + ", ".join(f'"{item}"' for item in value) + "]"
            lines.append(f"{key} = {value}")
            continue
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


def security_samples(directory: Path) -> dict:
    """Samples of the security settings, whose files must exist."""
    certs = write_dev_certificates(directory / "tls")
    users = directory / "users.txt"
    users.write_text("admin:pw-admin\n")
    files = {"tls-cert": certs.broker_cert, "tls-key": certs.broker_key, "tls-client-ca": certs.ca_cert,
             "tls-ca": certs.ca_cert, "bootstrap-user-file": users}
    return {"auth": ("required", "required"), "superusers": ("User:ops,User:root", ["User:ops", "User:root"]),
            "metrics-auth": ("none", "none"), "login-failure-limit": ("7", 7),
            **{key: (str(path), str(path)) for key, path in files.items()}}


def test_every_flag_has_an_env_var_and_a_toml_key(tmp_path):
    samples = {**SAMPLES, **security_samples(tmp_path)}
    parser_flags = {a.option_strings[0][2:] for a in build_parser()._actions if a.option_strings and a.dest != "help"}
    assert parser_flags == set(samples) | {"config", "cluster-secret-file", "join"}  # --join excludes --peers
    via_flags = load(*[item for key, (text, _) in samples.items() for item in (f"--{key}", text)])
    via_env = load(env={"RAFTKA_" + key.upper().replace("-", "_"): text for key, (text, _) in samples.items()})
    config = tmp_path / "broker.toml"
    config.write_text(toml_text({key: native for key, (_, native) in samples.items()}))
    via_toml = load("--config", str(config))
    via_toml_env = load(env={"RAFTKA_CONFIG": str(config)})
    assert via_flags == via_env == via_toml == via_toml_env
    assert via_flags.heartbeat_ms == 70 and via_flags.topic_defaults.segment_bytes == 8192
    assert via_flags.min_free_bytes == 4194304
    assert via_flags.security.superusers == {"User:ops", "User:root", "User:admin"}
    assert via_flags.security.login_failure_limit == 7 and via_flags.peers[0].http_url.startswith("https://")


def test_min_free_bytes_is_auto_unless_set():
    assert load("--id", "1", "--data-dir", "/d").min_free_bytes is None  # 1 GiB or 5 % of the filesystem
    assert load("--id", "1", "--data-dir", "/d", "--min-free-bytes", "auto").min_free_bytes is None
    assert load("--id", "1", "--data-dir", "/d", env={"RAFTKA_MIN_FREE_BYTES": "0"}).min_free_bytes == 0
    with pytest.raises(ConfigError, match="--min-free-bytes"):
        load("--id", "1", "--data-dir", "/d", "--min-free-bytes", "-5")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["flag", "env", "toml"]), unique=True))
def test_precedence_flag_over_env_over_toml(tmp_path_factory, sources):
    values = {"flag": 61, "env": 62, "toml": 63}
    argv, env = ["--id", "1", "--data-dir", "/d"], {}
    if "flag" in sources:
        argv += ["--heartbeat-ms", str(values["flag"])]
    if "env" in sources:
        env["RAFTKA_HEARTBEAT_MS"] = str(values["env"])
    if "toml" in sources:
        config = tmp_path_factory.mktemp("cfg") / "c.toml"
        config.write_text(f"heartbeat_ms = {values['toml']}\n")
        argv += ["--config", str(config)]
    expected = next((values[s] for s in ("flag", "env", "toml") if s in sources), 100)
    assert load(*argv, env=env).heartbeat_ms == expected


def test_empty_env_var_counts_as_unset():
    assert (
        load("--id", "1", "--data-dir", "/d", env={"RAFTKA_HEARTBEAT_MS": "", "RAFTKA_PEERS": ""}).heartbeat_ms == 100
    )


def test_flag_config_file_wins_over_env_config_file(tmp_path):
    (tmp_path / "a.toml").write_text("heartbeat-ms = 11\n")
    (tmp_path / "b.toml").write_text("heartbeat-ms = 22\n")
    cfg = load(
        "--id",
        "1",
        "--data-dir",
        "/d",
        "--config",
        str(tmp_path / "a.toml"),
        env={"RAFTKA_CONFIG": str(tmp_path / "b.toml")},
    )
    assert cfg.heartbeat_ms == 11


def test_toml_peers_table(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        'id = 1\ndata_dir = "/d"\ncluster-secret-file = "%s"\n[peers]\n1 = "a:1:2"\n2 = "b:1:2"\n'
        % (tmp_path / "secret")
    )
    (tmp_path / "secret").write_text(SECRET + "\n")
    cfg = load("--config", str(config))
    assert cfg.peers == (Peer(1, "a", 1, 2), Peer(2, "b", 1, 2))
    assert cfg.cluster_secret == SECRET.encode()


def test_secret_sources(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("  from-the-file-0123456789\n")
    assert load(*base()).cluster_secret == SECRET.encode()
    cfg = load("--id", "2", "--data-dir", "/d", "--peers", PEERS, "--cluster-secret-file", str(secret_file))
    assert cfg.cluster_secret == b"from-the-file-0123456789"
    # The file flag beats the inline secret from the environment: precedence is per source.
    env = {"RAFTKA_CLUSTER_SECRET": "from-the-environment-xyz"}
    cfg = load("--id", "2", "--data-dir", "/d", "--peers", PEERS, "--cluster-secret-file", str(secret_file), env=env)
    assert cfg.cluster_secret == b"from-the-file-0123456789"
    cfg = load("--id", "2", "--data-dir", "/d", "--peers", PEERS, env={"RAFTKA_CLUSTER_SECRET_FILE": str(secret_file)})
    assert cfg.cluster_secret == b"from-the-file-0123456789"


# --- validation messages ---------------------------------------------------------------


def test_multi_broker_cluster_requires_a_secret():
    message = error_of("--id", "1", "--data-dir", "/d", "--peers", PEERS)
    assert message == (
        "refusing to start: a cluster secret is required for a multi-broker cluster "
        "(--cluster-secret or RAFTKA_CLUSTER_SECRET)"
    )


@pytest.mark.parametrize(
    ("argv", "env", "fragments"),
    [
        ([], {}, ["--id is required"]),
        (["--id", "1"], {}, ["--data-dir is required"]),
        (["--id", "0", "--data-dir", "/d"], {}, ["--id: invalid value '0'", "between 1 and"]),
        (["--id", "x", "--data-dir", "/d"], {}, ["--id: invalid value 'x'", "not an integer"]),
        (
            ["--id", "1"],
            {"RAFTKA_DATA_DIR": " "},
            ["--data-dir (from RAFTKA_DATA_DIR): invalid value ' '", "must not be empty"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--listen", "localhost"],
            {},
            ["--listen: invalid value 'localhost'", "HOST:PORT"],
        ),
        (["--id", "1", "--data-dir", "/d", "--listen", ":8080"], {}, ["--listen", "host is missing"]),
        (["--id", "1", "--data-dir", "/d", "--listen", "h:70000"], {}, ["port '70000'"]),
        (["--id", "1", "--data-dir", "/d", "--listen", "h:http"], {}, ["port 'http'"]),
        (["--id", "1", "--data-dir", "/d", "--listen", "::1:8080"], {}, ["IPv6 addresses need brackets"]),
        (["--id", "1", "--data-dir", "/d", "--listen", "[nope]:8080"], {}, ["'[nope]' is not an IPv6 address"]),
        (["--id", "1", "--data-dir", "/d", "--listen", "256.1.1.1:80"], {}, ["'256.1.1.1' is not an IPv4 address"]),
        (["--id", "1", "--data-dir", "/d", "--listen", "bad host:80"], {}, ["'bad host' is not a valid host name"]),
        (
            ["--id", "1", "--data-dir", "/d"],
            {"RAFTKA_LISTEN": "x"},
            ["--listen (from RAFTKA_LISTEN): invalid value 'x'"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--listen", "h:1", "--raft-listen", "h:1"],
            {},
            ["both h:1", "different ports"],
        ),
        (
            ["--id", "4", "--data-dir", "/d", "--peers", PEERS, "--cluster-secret", SECRET],
            {},
            ["broker 4 is not in --peers", "brokers 1, 2, 3"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--peers", "1=a:1:2,1=b:1:2"],
            {},
            ["--peers: invalid value", "broker id 1 is listed twice"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--peers", "1=a:1:2,2=a:1:3"],
            {},
            ["broker 2 uses a:1, already used by broker 1"],
        ),
        (["--id", "1", "--data-dir", "/d", "--peers", "1=a:5:5"], {}, ["broker 1 uses a:5, already used by itself"]),
        (["--id", "1", "--data-dir", "/d", "--peers", "1=A:1:2,2=a:2:1"], {}, ["already used by broker 1"]),
        (
            ["--id", "1", "--data-dir", "/d", "--peers", "1=a:1:2,,2=b:1:2"],
            {},
            ["expected ID=HOST:HTTP_PORT:RAFT_PORT, got ''"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--peers", "1=a:1"],
            {},
            ["broker 1: expected HOST:HTTP_PORT:RAFT_PORT, got 'a:1'"],
        ),
        (["--id", "1", "--data-dir", "/d", "--peers", "x=a:1:2"], {}, ["broker id 'x' not an integer"]),
        (["--id", "1", "--data-dir", "/d", "--peers", "1=a:0:2"], {}, ["broker 1: port '0' must be a number from 1"]),
        (
            ["--id", "1", "--data-dir", "/d", "--cluster-secret", "short"],
            {},
            ["--cluster-secret: the cluster secret is too short (5 bytes)"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--heartbeat-ms", "600"],
            {},
            ["--heartbeat-ms (600) must be at most half of --election-timeout-ms (800)"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--election-timeout-ms", "10"],
            {},
            ["--election-timeout-ms: invalid value '10'", "between 50 and 60000"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--max-request-bytes", "100000"],
            {},
            ["--max-request-bytes (100000) is smaller than the default max.message.bytes (1048588)"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--default-replication-factor", "3"],
            {},
            ["--default-replication-factor: Replication factor 3 is larger than the number of available brokers (1)"],
        ),
        (["--id", "1", "--data-dir", "/d", "--default-replication-factor", "2"], {},
         ["Replication factor 2 is larger than the number of available brokers (1)"]),
        (["--id", "4", "--data-dir", "/d", "--join", "http://h:1", "--peers", "4=h:1:2"], {},
         ["--join and --peers: give one, not both"]),
        (["--id", "4", "--data-dir", "/d", "--join", "http://h:1"], {}, ["refusing to join: a cluster secret"]),
        (["--id", "4", "--data-dir", "/d", "--join", "ftp://h:1"], {}, ["--join: invalid value", "http[s]://HOST:PORT"]),
        (["--id", "4", "--data-dir", "/d", "--rack", "a b"], {}, ["--rack: invalid value"]),
        (["--id", "4", "--data-dir", "/d", "--metadata-voters", "9"], {}, ["--metadata-voters: invalid value"]),
        (
            ["--id", "1", "--data-dir", "/d", "--default-segment-bytes", "10"],
            {},
            ["--default-segment-bytes: invalid value '10'", "'segment.bytes' must be between 1024"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--default-retention-ms", "soon"],
            {},
            ["--default-retention-ms: invalid value 'soon'", "must be an integer"],
        ),
        (
            ["--id", "1", "--data-dir", "/d", "--log-level", "loud"],
            {},
            ["--log-level: invalid value 'loud'", "DEBUG, INFO"],
        ),
        (["--id", "1", "--data-dir", "/d", "--bogus"], {}, ["unrecognized arguments: --bogus"]),
        (["--id"], {}, ["--id: expected one argument"]),
    ],
)
def test_invalid_configurations(argv, env, fragments):
    message = error_of(*argv, env=env)
    for fragment in fragments:
        assert fragment in message


def test_secret_errors_never_echo_the_secret(tmp_path):
    both = error_of("--id", "1", "--data-dir", "/d", "--cluster-secret", SECRET, "--cluster-secret-file", "/x")
    assert "give one, not both" in both and SECRET not in both
    short = error_of("--id", "1", "--data-dir", "/d", env={"RAFTKA_CLUSTER_SECRET": "tiny-secret"})
    assert "(from RAFTKA_CLUSTER_SECRET): the cluster secret is too short (11 bytes)" in short
    assert "tiny-secret" not in short
    (tmp_path / "c.toml").write_text("cluster-secret = 12345\n")
    wrong_type = error_of("--id", "1", "--data-dir", "/d", "--config", str(tmp_path / "c.toml"))
    assert (
        "--cluster-secret (from" in wrong_type
        and "must be a non-empty string" in wrong_type
        and "12345" not in wrong_type
    )


def test_secret_file_problems(tmp_path):
    missing = error_of("--id", "1", "--data-dir", "/d", "--cluster-secret-file", str(tmp_path / "nope"))
    assert f"--cluster-secret-file: cannot read '{tmp_path / 'nope'}': No such file or directory" == missing
    directory = error_of("--id", "1", "--data-dir", "/d", "--cluster-secret-file", str(tmp_path))
    assert "cannot read" in directory
    (tmp_path / "empty").write_text("\n \n")
    assert "is empty" in error_of("--id", "1", "--data-dir", "/d", "--cluster-secret-file", str(tmp_path / "empty"))


def test_config_file_problems(tmp_path):
    assert "--config: cannot read" in error_of("--config", str(tmp_path / "missing.toml"))
    assert "(from RAFTKA_CONFIG): cannot read" in error_of(env={"RAFTKA_CONFIG": str(tmp_path / "missing.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("id = = 1\n")
    assert "is not valid TOML" in error_of("--config", str(bad))
    typo = tmp_path / "typo.toml"
    typo.write_text("id = 1\ndata-dir = '/d'\nheartbeat-msec = 5\n")
    assert "unknown key 'heartbeat-msec'" in error_of("--config", str(typo))
    twice = tmp_path / "twice.toml"
    twice.write_text("id = 1\ndata-dir = '/d'\ndata_dir = '/e'\n")
    assert "sets 'data_dir' twice" in error_of("--config", str(twice))
    wrong_type = tmp_path / "type.toml"
    wrong_type.write_text("id = 1\ndata-dir = '/d'\nheartbeat-ms = 1.5\n")
    message = error_of("--config", str(wrong_type))
    assert f"--heartbeat-ms (from '{wrong_type}' key 'heartbeat-ms'): invalid value '1.5': not an integer" == message


def test_kafka_listener_addresses():
    """--kafka-advertise defaults to --kafka-listen, needs it, and must be an address clients can connect to."""
    assert load(*base()).kafka_listen is None
    config = load(*base(), "--kafka-listen", "127.0.0.1:9092")
    assert str(config.kafka_listen) == str(config.kafka_advertise) == "127.0.0.1:9092"
    config = load(*base(), "--kafka-listen", "0.0.0.0:9092", "--kafka-advertise", "broker-1:9092")
    assert (str(config.kafka_listen), str(config.kafka_advertise)) == ("0.0.0.0:9092", "broker-1:9092")
    for args, message in ((("--kafka-advertise", "h:9092"), "needs --kafka-listen"),
                          (("--kafka-listen", "0.0.0.0:9092"), "clients cannot connect"),
                          (("--kafka-listen", "127.0.0.1:0"), "clients cannot connect")):
        with pytest.raises(ConfigError, match=message):
            load(*base(), *args)
