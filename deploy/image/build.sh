#!/usr/bin/env bash
# Build raftnode's Docker images from Debian's packages alone: no image registry is needed.
#
#   raftnode-base        debootstrap'ed Debian rootfs (python3, python3-venv), `docker import`ed
#   raftnode             FROM raftnode-base + the project, installed from wheels built here
#   raftnode-prometheus  FROM raftnode-base + Debian's prometheus package
#
# Idempotent: the base is rebuilt only when its inputs (suite, packages, mirror) change or
# FORCE=1; the two Dockerfile builds use Docker's layer cache. Needs docker, root to build
# the base (debootstrap), and the ordinary package clients (apt for Debian, pip for Python wheels).
#
# Environment: SUITE (bookworm), MIRROR (default: the host's own Debian apt source, else
# debootstrap's default), WORK (/var/tmp/raftnode-image), PY (python for `pip wheel`),
# FORCE=1 (rebuild the base), SKIP_PROMETHEUS=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SUITE=${SUITE:-bookworm}
WORK=${WORK:-/var/tmp/raftnode-image}
BASE=raftnode-base
PACKAGES=python3,python3-venv,ca-certificates
if [[ -z "${PY:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi

log() { printf "[build.sh %s] %s\n" "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The Debian mirror the host's apt already uses: the same archive, the same trust.
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' "$f"
  done | head -n1
  if [[ -f /etc/apt/sources.list ]]; then
    awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list
  fi
}
MIRROR=${MIRROR:-$(host_mirror | head -n1 || true)}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found ($2)"; }
need docker "install Docker Engine"

# --- 1. raftnode-base: debootstrap + docker import ------------------------------------------
inputs="suite=$SUITE packages=$PACKAGES mirror=${MIRROR:-default} v=1"
want=$(printf '%s' "$inputs" | sha256sum | cut -c1-16)
have=$(docker image inspect "$BASE" --format '{{ index .Config.Labels "org.raftnode.inputs" }}' \
       2>/dev/null || true)
if [[ "${FORCE:-0}" != 1 && "$have" == "$want" ]]; then
  log "$BASE is up to date ($inputs)"
else
  [[ $(id -u) -eq 0 ]] || die "debootstrap needs root (to build $BASE)"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  rootfs="$WORK/rootfs"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  log "debootstrap $SUITE into $rootfs (${MIRROR:-the default mirror}); takes minutes"
  # shellcheck disable=SC2086
  debootstrap --variant=minbase --include="$PACKAGES" --components=main \
    "$SUITE" "$rootfs" ${MIRROR:+"$MIRROR"} >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  # a container needs no package cache, no machine id, and no host name of ours
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  : >"$rootfs/etc/machine-id"
  printf 'raftnode\n' >"$rootfs/etc/hostname"
  log "docker import $BASE"
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.raftnode.inputs=$want" \
    - "$BASE:latest" >/dev/null
  rm -rf "$rootfs"
fi

# --- 2. raftnode: wheels built on the host, installed offline in the image ----------------
context="$WORK/context"
rm -rf "$context"
mkdir -p "$context/wheels"
# build from a copy of the sources, so the work tree gets no build/ or egg-info litter
src="$WORK/src"
rm -rf "$src"
mkdir -p "$src"
tar -C "$ROOT" --exclude=__pycache__ -cf - pyproject.toml README.md raftnode wal cluster chaos \
  | tar -C "$src" -xf -
log "pip wheel raftnode[fast] and its dependencies ($PY)"
SOURCE_DATE_EPOCH=315532800 "$PY" -m pip wheel --quiet --wheel-dir "$context/wheels" "$src[fast]" \
  || die "pip wheel failed"
log "docker build raftnode"
docker build --quiet -t raftnode:latest -f "$ROOT/Dockerfile" "$context" >/dev/null

# --- 3. raftnode-prometheus: Debian's prometheus on the same base -------------------------
if [[ "${SKIP_PROMETHEUS:-0}" != 1 ]]; then
  log "docker build raftnode-prometheus"
  docker build --quiet -t raftnode-prometheus:latest \
    -f "$ROOT/deploy/image/prometheus.Dockerfile" "$ROOT/deploy/prometheus" >/dev/null
fi
# superseded builds of ours (untagged, carrying the base's label); nobody else's images
docker image prune --force --filter "label=org.raftnode.inputs" >/dev/null
log "done: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E '^raftnode(-base|-prometheus)?:' | tr '\n' ' ')"
