#!/usr/bin/env bash
# Real docker test of the image and both compose files (run by `make docker-test`).
#
# 1. A docker engine: uses the running one; else, as root, installs Debian's docker.io and
#    docker-compose when missing and starts dockerd in the background (stopped again at the end).
# 2. The image, built offline by docker/build-offline.sh (debootstrapped bookworm base, cached under
#    /var/cache/raftka-docker, and wheels from `pip wheel` on this host). With RAFTKA_DOCKER_BASE_IMAGE
#    set (e.g. python:3.11-slim where Docker Hub is reachable) that image is the base instead.
# 3. docker/scenario.py against docker/compose.yml (R=3, one broker killed; then the elastic scenario:
#    broker4 joins, a rebalance moves replicas onto it, broker1 is decommissioned, every acknowledged
#    record read back) and docker/compose-5.yml (R=5, two brokers killed), each as compose project
#    raftka-test, with `down -v` at the end.
# Published ports: 9091.. when free, else free ports picked here. The cluster secret and the admin password
# are random; the CA and certificates (TLS is on) go to a temporary folder removed at the end.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$(date +%s)
dockerd_pid=""

log() { printf '[%s] docker-test: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

compose_down() {
    [ -n "${compose_file:-}" ] || return 0
    $RAFTKA_COMPOSE -f "$compose_file" --profile elastic down -v --remove-orphans >/dev/null 2>&1 || true
}

cleanup() {
    compose_down
    [ -z "${RAFTKA_TLS_DIR:-}" ] || rm -rf "$RAFTKA_TLS_DIR"
    if [ -n "$dockerd_pid" ]; then
        log "stopping the dockerd started here (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
    log "apt-get install $*"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >/tmp/raftka-docker-apt.log 2>&1; then
        tail -n 20 /tmp/raftka-docker-apt.log >&2
        log "apt-get install $* failed"
        exit 1
    fi
}

ensure_engine() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        log "no usable docker engine and not root: cannot start one"
        exit 1
    fi
    if ! command -v dockerd >/dev/null; then
        if command -v docker-compose >/dev/null; then apt_install docker.io; else apt_install docker.io docker-compose; fi
    fi
    log "starting dockerd (log: /tmp/raftka-dockerd.log)"
    dockerd >/tmp/raftka-dockerd.log 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 1
    done
    tail -n 20 /tmp/raftka-dockerd.log >&2
    log "dockerd did not come up"
    exit 1
}

ensure_compose() {
    if [ -n "${RAFTKA_COMPOSE:-}" ]; then
        return
    elif command -v docker-compose >/dev/null; then
        RAFTKA_COMPOSE=docker-compose
    elif docker compose version >/dev/null 2>&1; then
        RAFTKA_COMPOSE="docker compose"
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt_install docker-compose
        RAFTKA_COMPOSE=docker-compose
    else
        log "neither docker-compose nor 'docker compose' is available"
        exit 1
    fi
}

free_ports() {
    # $1 brokers: 9091.. if all free on 127.0.0.1, else as many ports the kernel picks as free.
    python3 - "$1" <<'EOF'
import socket, sys, time
n = int(sys.argv[1])
def free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as docker-proxy binds: TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
ports = list(range(9091, 9091 + n))
for _ in range(10):  # the previous cluster's port forwarders may take a moment to go
    if all(free(p) for p in ports):
        break
    time.sleep(0.5)
else:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
print(",".join(map(str, ports)))
EOF
}

ensure_engine
ensure_compose
export RAFTKA_COMPOSE
log "engine $(docker version --format '{{.Server.Version}}'), compose: $($RAFTKA_COMPOSE version --short 2>/dev/null || echo "$RAFTKA_COMPOSE")"

export RAFTKA_IMAGE=raftka:docker-test
export COMPOSE_PROJECT_NAME=raftka-test
export RAFTKA_HTTP_BIND=127.0.0.1
RAFTKA_CLUSTER_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export RAFTKA_CLUSTER_SECRET
RAFTKA_ADMIN_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
export RAFTKA_ADMIN_PASSWORD
RAFTKA_TLS_DIR=$(mktemp -d /tmp/raftka-docker-tls.XXXXXX)  # the CA and certificates tls-init writes
export RAFTKA_TLS_DIR

build_started=$(date +%s)
BASE_IMAGE=${RAFTKA_DOCKER_BASE_IMAGE:-} docker/build-offline.sh "$RAFTKA_IMAGE" >/tmp/raftka-docker-build.log 2>&1 || {
    tail -n 40 /tmp/raftka-docker-build.log >&2
    log "image build failed (full log: /tmp/raftka-docker-build.log)"
    exit 1
}
log "image $RAFTKA_IMAGE built in $(($(date +%s) - build_started))s"
image_config=$(docker image inspect --format '{{.Config.User}} {{json .Config.Env}} {{json .Config.Healthcheck.Test}}' "$RAFTKA_IMAGE")
for expected in 'raftka ' MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_TOP_PAD_=67108864 /health; do
    if [[ "$image_config" != *"$expected"* ]]; then
        log "image config lacks '$expected': $image_config"
        exit 1
    fi
done
if docker run --rm --entrypoint sh "$RAFTKA_IMAGE" -c '/opt/raftka/bin/python -m pip --version || command -v gcc' >/dev/null 2>&1; then
    log "the image ships build tooling (pip in /opt/raftka, or gcc)"
    exit 1
fi

compose_file=docker/compose.yml
compose_down  # leftovers of an interrupted run
python3 docker/scenario.py --compose-file "$compose_file" --ports "$(free_ports 3)" --replication-factor 3 --kill 1

compose_down
python3 docker/scenario.py --compose-file "$compose_file" --ports "$(free_ports 4)" --elastic

compose_file=docker/compose-5.yml
compose_down
python3 docker/scenario.py --compose-file "$compose_file" --ports "$(free_ports 5)" --replication-factor 5 --kill 2

compose_file=""
log "passed: both compose files and the elastic scenario, in $(($(date +%s) - started))s"
