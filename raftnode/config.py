"""Command-line flags with etcd's names, meanings, defaults and validation rules.

Every flag is also read from ``RAFTNODE_<FLAG_NAME>`` (upper case, dashes to
underscores); the command line wins over the environment. `parse_args` is pure
(argv and env in, frozen `Config` or `ConfigError` out); `load` is the shell
that turns a `ConfigError` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from raftnode.ids import cluster_id, member_id

ENV_PREFIX = "RAFTNODE_"
DEFAULT_NAME = "default"
MAX_ELECTION_MS = 50000  # etcd's maxElectionMs
WAL_BACKENDS = ("file", "memory", "sqlite")
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("json", "text")
CLUSTER_STATES = ("new", "existing")
# etcd's TLS flags: accepted by name so the message is precise, refused when used.
TLS_FLAGS = ("cert-file", "key-file", "trusted-ca-file", "client-crl-file", "peer-cert-file",
             "peer-key-file", "peer-trusted-ca-file", "peer-crl-file")
TLS_BOOL_FLAGS = ("client-cert-auth", "auto-tls", "peer-client-cert-auth", "peer-auto-tls")


class ConfigError(ValueError):
    """A flag, an environment variable or --initial-cluster is invalid; the text is one line."""


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration of one member. URLs keep their command-line order."""

    name: str
    data_dir: str
    listen_client_urls: tuple[str, ...]
    advertise_client_urls: tuple[str, ...]
    listen_peer_urls: tuple[str, ...]
    initial_advertise_peer_urls: tuple[str, ...]
    initial_cluster: tuple[tuple[str, tuple[str, ...]], ...]  # (name, peer URLs) in flag order
    initial_cluster_state: str
    initial_cluster_token: str
    heartbeat_interval_ms: int
    election_timeout_ms: int
    snapshot_count: int
    snapshot_catchup_entries: int
    max_snapshots: int
    max_wals: int
    max_request_bytes: int
    unsafe_no_fsync: bool
    async_storage_writes: bool
    wal_backend: str
    log_level: str
    log_format: str
    enable_failpoints: bool
    member_id: int  # etcd's ID of this member for a bootstrapped (not run-time added) cluster
    cluster_id: int  # etcd's cluster ID of --initial-cluster + --initial-cluster-token

    def initial_members(self) -> dict[int, tuple[str, ...]]:
        """member ID -> peer URLs for every member of --initial-cluster."""
        token = self.initial_cluster_token
        return {member_id(urls, token): urls for _, urls in self.initial_cluster}

    def election_ticks(self) -> int:
        """etcd's ElectionTicks = election timeout / heartbeat interval (rounded down)."""
        return self.election_timeout_ms // self.heartbeat_interval_ms


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    kind: str  # "str" | "int" | "bool" | "urls"
    default: Any
    help: str
    choices: tuple[str, ...] = ()


FLAGS: tuple[_Flag, ...] = (
    _Flag("name", "str", DEFAULT_NAME, "human-readable name for this member"),
    _Flag("data-dir", "str", None, "path to the data directory (default ${name}.etcd)"),
    _Flag("listen-client-urls", "urls", "http://localhost:2379", "URLs to listen on for clients"),
    _Flag("advertise-client-urls", "urls", "http://localhost:2379",
          "this member's client URLs to advertise to the rest of the cluster"),
    _Flag("listen-peer-urls", "urls", "http://localhost:2380", "URLs to listen on for peers"),
    _Flag("initial-advertise-peer-urls", "urls", "http://localhost:2380",
          "this member's peer URLs to advertise to the rest of the cluster"),
    _Flag("initial-cluster", "str", None,
          "initial cluster configuration for bootstrapping: name=url,... "
          "(default default=http://localhost:2380, or ${name}=${initial-advertise-peer-urls})"),
    _Flag("initial-cluster-state", "str", "new", "initial cluster state", CLUSTER_STATES),
    _Flag("initial-cluster-token", "str", "etcd-cluster",
          "initial cluster token for the cluster during bootstrap"),
    _Flag("heartbeat-interval", "int", 100, "time (in milliseconds) of a heartbeat interval"),
    _Flag("election-timeout", "int", 1000, "time (in milliseconds) for an election to timeout"),
    _Flag("snapshot-count", "int", 10000, "number of committed transactions to trigger a snapshot"),
    _Flag("snapshot-catchup-entries", "int", 5000,
          "number of entries for a slow follower to catch up after compacting the raft storage"),
    _Flag("max-snapshots", "int", 5, "maximum number of snapshot files to retain (0 is unlimited)"),
    _Flag("max-wals", "int", 5, "maximum number of wal files to retain (0 is unlimited)"),
    _Flag("max-request-bytes", "int", 1572864, "maximum client request size in bytes"),
    _Flag("unsafe-no-fsync", "bool", False, "disables fsync, unsafe, will cause data loss"),
    _Flag("async-storage-writes", "bool", False,
          "persist beside the raft loop: heartbeats flow during an fsync stall"),
    _Flag("wal-backend", "str", "file", "write-ahead log backend", WAL_BACKENDS),
    _Flag("log-level", "str", "info", "log level", LOG_LEVELS),
    _Flag("log-format", "str", "json", "log line format", LOG_FORMATS),
    _Flag("enable-failpoints", "bool", False,
          "serve /debug/failpoints and honour RAFTNODE_FAILPOINTS"),
    *(_Flag(n, "str", "", "TLS is not supported; serve plain http behind a TLS proxy")
      for n in TLS_FLAGS),
    *(_Flag(n, "bool", False, "TLS is not supported; serve plain http behind a TLS proxy")
      for n in TLS_BOOL_FLAGS),
)


def env_name(flag: str) -> str:
    """RAFTNODE_<FLAG_NAME> for a flag name such as 'initial-cluster'."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool subset that etcd users write: true/1/false/0 (any case)."""
    low = text.strip().lower()
    if low in ("true", "1", "t"):
        return True
    if low in ("false", "0", "f"):
        return False
    raise ConfigError(f"invalid boolean value {text!r} (want true, 1, false or 0)")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _build_parser() -> _Parser:
    p = _Parser(prog="raftnode", description="A Raft member speaking etcd's v3 JSON API.",
                allow_abbrev=False, exit_on_error=False)
    for f in FLAGS:
        opts = ("--" + f.name, "-" + f.name)  # Go's flag package accepts -flag and --flag
        dest = f.name.replace("-", "_")
        if f.kind == "bool":
            # Go flags accept both `--flag` and `--flag=true|false`.
            p.add_argument(*opts, dest=dest, nargs="?", const="true", default=None,
                           metavar="BOOL", help=f.help)
        else:
            p.add_argument(*opts, dest=dest, default=None, help=f.help)
    return p


def _validate_url(flag: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise ConfigError(f"--{flag}: {url!r} uses https, but TLS is not supported")
    if parts.scheme != "http":
        raise ConfigError(f"--{flag}: {url!r}: URL scheme must be http")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--{flag}: {url!r}: {exc}") from None
    if not parts.hostname or port is None:
        raise ConfigError(f"--{flag}: {url!r}: URL address does not have the form \"host:port\"")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"--{flag}: {url!r}: URL must not contain a path")
    return url.rstrip("/")


def _split_urls(flag: str, text: str) -> tuple[str, ...]:
    urls = tuple(_validate_url(flag, u.strip()) for u in text.split(",") if u.strip())
    if not urls:
        raise ConfigError(f"--{flag} must list at least one URL")
    return urls


def host_port(url: str) -> tuple[str, int]:
    """(host, port) to bind for a validated URL such as --listen-peer-urls' entries."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def parse_initial_cluster(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Parse ``name=url,name=url,...``; a name may repeat to give a member several URLs."""
    order: list[str] = []
    urls: dict[str, list[str]] = {}
    seen: set[str] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, url = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--initial-cluster: {item!r} is not of the form name=url")
        name = name.strip()
        url = _validate_url("initial-cluster", url.strip())
        if url in seen:
            raise ConfigError(f"initial cluster {text} has duplicate url")
        seen.add(url)
        if name not in urls:
            order.append(name)
            urls[name] = []
        urls[name].append(url)
    if not order:
        raise ConfigError("--initial-cluster is empty")
    return tuple((n, tuple(urls[n])) for n in order)


def _raw_values(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    try:
        ns = _build_parser().parse_args(list(argv))
    except argparse.ArgumentError as exc:  # exit_on_error=False path
        raise ConfigError(str(exc)) from None
    values: dict[str, Any] = {}
    for f in FLAGS:
        dest = f.name.replace("-", "_")
        raw = getattr(ns, dest)
        source = f"--{f.name}"
        if raw is None and env_name(f.name) in env:
            raw, source = env[env_name(f.name)], env_name(f.name)
        if raw is None:
            values[dest] = f.default
            continue
        if f.kind == "bool":
            try:
                values[dest] = parse_bool(raw)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        elif f.kind == "int":
            try:
                values[dest] = int(raw, 10)
            except ValueError:
                raise ConfigError(f"{source}: invalid integer {raw!r}") from None
        else:
            values[dest] = raw
        if f.choices and values[dest] not in f.choices:
            raise ConfigError(f"{source}: invalid value {raw!r} (choose from "
                              f"{', '.join(f.choices)})")
    return values


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    """Flags + environment -> validated Config. Raises ConfigError with a one-line reason."""
    v = _raw_values(argv, env)
    for n in TLS_FLAGS + TLS_BOOL_FLAGS:
        if v[n.replace("-", "_")]:
            raise ConfigError(f"--{n}: TLS is not supported; serve plain http behind a TLS proxy")
    name: str = v["name"]
    if not name:
        raise ConfigError("--name must not be empty")
    hb, el = v["heartbeat_interval"], v["election_timeout"]
    if hb <= 0:
        raise ConfigError(f"--heartbeat-interval[{hb}ms] must be positive")
    if 5 * hb > el:
        raise ConfigError(f"--election-timeout[{el}ms] should be at least as 5 times as "
                          f"--heartbeat-interval[{hb}ms]")
    if el > MAX_ELECTION_MS:
        raise ConfigError(f"--election-timeout[{el}ms] is too long, and should be set less "
                          f"than {MAX_ELECTION_MS}ms")
    for flag, low in (("snapshot-count", 1), ("snapshot-catchup-entries", 1),
                      ("max-snapshots", 0), ("max-wals", 0), ("max-request-bytes", 1)):
        if v[flag.replace("-", "_")] < low:
            raise ConfigError(f"--{flag} must be at least {low}, got {v[flag.replace('-', '_')]}")
    lcurls = _split_urls("listen-client-urls", v["listen_client_urls"])
    acurls = _split_urls("advertise-client-urls", v["advertise_client_urls"])
    lpurls = _split_urls("listen-peer-urls", v["listen_peer_urls"])
    apurls = _split_urls("initial-advertise-peer-urls", v["initial_advertise_peer_urls"])
    ic_text = v["initial_cluster"]
    if ic_text is None:  # etcd: a renamed member defaults to a cluster of itself
        ic_text = ",".join(f"{name}={u}" for u in apurls)
    cluster = parse_initial_cluster(ic_text)
    mine = dict(cluster).get(name)
    if mine is None:
        raise ConfigError(f"couldn't find local name {name!r} in the initial cluster "
                          f"configuration")
    if sorted(mine) != sorted(apurls):
        raise ConfigError(f"--initial-cluster has {name}={','.join(mine)} but missing from "
                          f"--initial-advertise-peer-urls={','.join(apurls)}")
    token: str = v["initial_cluster_token"]
    ids = [member_id(urls, token) for _, urls in cluster]
    if len(set(ids)) != len(ids):
        raise ConfigError("--initial-cluster: two members have identical IDs")
    return Config(
        name=name, data_dir=v["data_dir"] or f"{name}.etcd",
        listen_client_urls=lcurls, advertise_client_urls=acurls,
        listen_peer_urls=lpurls, initial_advertise_peer_urls=apurls,
        initial_cluster=cluster, initial_cluster_state=v["initial_cluster_state"],
        initial_cluster_token=token, heartbeat_interval_ms=hb, election_timeout_ms=el,
        snapshot_count=v["snapshot_count"], snapshot_catchup_entries=v["snapshot_catchup_entries"],
        max_snapshots=v["max_snapshots"], max_wals=v["max_wals"],
        max_request_bytes=v["max_request_bytes"], unsafe_no_fsync=v["unsafe_no_fsync"],
        async_storage_writes=v["async_storage_writes"], wal_backend=v["wal_backend"],
        log_level=v["log_level"], log_format=v["log_format"],
        enable_failpoints=v["enable_failpoints"],
        member_id=member_id(mine, token), cluster_id=cluster_id(ids),
    )


def unknown_env(env: Mapping[str, str]) -> list[str]:
    """RAFTNODE_* variables that name no flag (etcd warns about these; so should the driver)."""
    known = {env_name(f.name) for f in FLAGS} | {ENV_PREFIX + "FAILPOINTS"}
    return sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)


def load(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    """The shell around parse_args: `--help` prints help; any error is one stderr line, exit 2."""
    if "-h" in argv or "--help" in argv:
        _build_parser().print_help()
        raise SystemExit(0)
    try:
        return parse_args(argv, env)
    except ConfigError as exc:
        print(f"raftnode: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
