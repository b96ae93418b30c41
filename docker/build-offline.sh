#!/usr/bin/env bash
# Build the raftka image without network access inside `docker build`.
#
#   docker/build-offline.sh [IMAGE_TAG]          (default tag: raftka:latest)
#
# 1. Base image: $BASE_IMAGE if set, else raftka-base:bookworm, made here when missing from a
#    `debootstrap --variant=minbase` Debian bookworm with python3 + python3-venv (needs root and
#    a Debian mirror; the root file system is cached as a tar under $RAFTKA_DOCKER_CACHE,
#    default /var/cache/raftka-docker, so later builds only `docker import` it).
# 2. Wheels: `pip wheel` on this host puts raftka's dependencies (from pyproject.toml) plus
#    setuptools and wheel into docker/wheelhouse/ of a temporary build context holding a copy of
#    the sources; the image builds the raftka wheel itself from those sources.
# 3. `docker build` of docker/Dockerfile: seeing docker/wheelhouse/, it installs with --no-index.
# The host's Python must be the base image's (3.11) on the same CPU architecture, as the wheels
# are built for it. $PYTHON picks it (default: the repository's .venv, else python3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tag=${1:-raftka:latest}
cache=${RAFTKA_DOCKER_CACHE:-/var/cache/raftka-docker}
base_tag=raftka-base:bookworm
base_packages=python3,python3-venv

log() { printf 'build-offline: %s\n' "$*" >&2; }

debian_mirror() {
    # The Debian archive this host's apt uses (deb822 .sources or one-line .list files).
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
          | grep -E '/debian/?$' | head -n 1 || true)
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -e 's/\[[^]]*\]//' \
              | awk '$1 == "deb" { print $2 }' | grep -E '/debian/?$' | head -n 1 || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

ensure_debootstrap_base() {
    if docker image inspect "$base_tag" >/dev/null 2>&1; then
        log "base image $base_tag exists"
        return
    fi
    local tarball="$cache/bookworm-minbase-${base_packages//,/-}.tar"
    if [ ! -s "$tarball" ]; then
        if [ "$(id -u)" != 0 ]; then
            log "debootstrap needs root; or set BASE_IMAGE to an image with python3.11 and its venv module"
            exit 1
        fi
        if ! command -v debootstrap >/dev/null; then
            log "installing debootstrap"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        fi
        local mirror root
        mirror=$(debian_mirror)
        mkdir -p "$cache"
        root=$(mktemp -d "$cache/rootfs.XXXXXX")
        log "debootstrap bookworm ($base_packages) from $mirror into $root"
        if ! debootstrap --variant=minbase --include="$base_packages" bookworm "$root" "$mirror" >"$root.log" 2>&1; then
            tail -n 20 "$root.log" >&2
            rm -rf "$root" "$root.log"
            exit 1
        fi
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root.log"
        tar -C "$root" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    log "docker import $tarball as $base_tag"
    docker import "$tarball" "$base_tag" >/dev/null
}

python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
    ensure_debootstrap_base
    base=$base_tag
fi

context=$(mktemp -d "${TMPDIR:-/tmp}/raftka-docker-context.XXXXXX")
trap 'rm -rf "$context"' EXIT
log "build context $context"
sources=(pyproject.toml storage raft node client docker)
[ -e "$repo/README.md" ] && sources+=(README.md)
(cd "$repo" && tar --exclude=__pycache__ --exclude='*.pyc' --exclude=docker/.env --exclude=docker/wheelhouse \
    -cf - "${sources[@]}") | tar -C "$context" -xf -
log "pip wheel: raftka's dependencies with $python"
"$python" -c 'import sys, tomllib; print(*tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"], sep="\n")' \
    "$repo/pyproject.toml" >"$context/requirements.txt"
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$context/docker/wheelhouse" \
    -r "$context/requirements.txt" 'setuptools>=68' wheel

log "docker build -t $tag (BASE_IMAGE=$base)"
docker build --build-arg "BASE_IMAGE=$base" -f "$context/docker/Dockerfile" -t "$tag" "$context" >&2
log "built $tag"
# Images of earlier builds that lost their tag; the last day's stay as the build cache.
docker image prune --force --filter label=org.opencontainers.image.title=raftka --filter until=24h >/dev/null
