"""``raftnode snapshot restore FILE ...``: a fresh data dir for a new cluster from a backup.

etcdutl's ``snapshot restore``, offline: the file that ``raftctl snapshot save`` wrote (the
state machine's snapshot followed by its SHA-256, as etcd streams it) becomes the data dir
of one member of a NEW cluster: new member and cluster IDs from ``--initial-cluster`` and
``--initial-cluster-token``, the old membership dropped, keys, revisions and leases kept.

What is written is what a member of a fresh cluster would have written itself, through the
storage interface: the WAL metadata (``bootstrap.encode_metadata``), the initial ADD_NODE
entries at term 1, committed (``bootstrap.initial_entries``), and a snapshot at the last of
them holding the restored store and the new membership (etcdutl writes the same: conf-change
entries, a hard state committing them and a snapshot at that index). Every member of the new
cluster is restored from the same file with the same flags, so all start from the same
state at the same index and ``bootstrap.boot`` loads each as an ordinary member.

Nothing is written unless the file is whole: it is checked (length, SHA-256, decodable)
first, the data dir is built beside its final place and renamed into it, and an existing
non-empty data dir is refused, as etcdutl refuses one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import msgpack

from raftnode import config
from raftnode.bootstrap import BootSpec, encode_metadata, initial_entries
from raftnode.driver import pack_snapshot_data
from raftnode.mvcc.store import MVCCStore
from raftnode.raft.types import ConfChange, ConfState
from raftnode.statemachine import StateMachine, StateMachineError
from wal.backends import open_backend
from wal.errors import WALError
from wal.snap import Snapshot as WalSnapshot

SHA256_SIZE = 32  # `snapshot save` files end with the SHA-256 of the data before it
# etcdutl's restore flags; each also read from RAFTNODE_<FLAG>, as the member's flags are
FLAGS = ("name", "data-dir", "initial-cluster", "initial-cluster-token",
         "initial-advertise-peer-urls")
PROG = "raftnode snapshot restore"


class RestoreError(RuntimeError):
    """The snapshot file or the target data dir is unusable; the message says why."""


@dataclass(slots=True, frozen=True)
class Restored:
    data_dir: str
    member_id: int
    cluster_id: int
    revision: int  # the store's revision, as it was when the snapshot was taken
    index: int  # raft index of the restored snapshot (= number of initial members)


def read_snapshot_file(path: str | os.PathLike[str]) -> bytes:
    """The state machine snapshot in a `snapshot save` file, its SHA-256 checked.

    RestoreError for a missing, truncated or damaged file (etcdutl: "snapshot file integrity
    check failed"); a truncated file fails the digest like a flipped bit does.
    """
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise RestoreError(f"cannot read snapshot file {os.fspath(path)}: "
                           f"{e.strerror or e}") from e
    if len(blob) <= SHA256_SIZE:
        raise RestoreError(f"snapshot file {os.fspath(path)} is truncated: {len(blob)} bytes "
                           f"cannot hold data and its {SHA256_SIZE}-byte SHA-256")
    data, digest = blob[:-SHA256_SIZE], blob[-SHA256_SIZE:]
    if hashlib.sha256(data).digest() != digest:
        raise RestoreError(f"snapshot file {os.fspath(path)} integrity check failed: the "
                           f"SHA-256 of its {len(data)} data bytes does not match the one "
                           "stored at its end (truncated or corrupted)")
    return data


def restored_state_machine(data: bytes, source: str) -> StateMachine:
    """Decode the snapshot's state machine (the digest only proves the bytes are whole)."""
    sm = StateMachine(MVCCStore())
    try:
        sm.restore(data)
    except (StateMachineError, ValueError, TypeError, KeyError, IndexError,
            msgpack.UnpackException) as e:
        raise RestoreError(f"snapshot file {source} is not a raftnode snapshot: {e}") from e
    return sm


def restore(file: str | os.PathLike[str], cfg: config.Config) -> Restored:
    """Build ``cfg.data_dir`` for member ``cfg.name`` of the cluster ``cfg`` describes."""
    source = os.fspath(file)
    sm = restored_state_machine(read_snapshot_file(file), source)
    dest = Path(os.path.abspath(cfg.data_dir))  # "." has no name to build a sibling of
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RestoreError(f"data-dir {dest} exists and is not empty: restore only makes "
                           "fresh data dirs")
    spec = BootSpec(name=cfg.name, peer_urls=cfg.initial_advertise_peer_urls,
                    initial_cluster=dict(cfg.initial_cluster), state="new",
                    token=cfg.initial_cluster_token, election_tick=cfg.election_ticks())
    tmp = dest.with_name(f".{dest.name}.restoring")
    shutil.rmtree(tmp, ignore_errors=True)  # a crashed restore's leftover: ours by its name
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        index = _write(tmp, spec, cfg, sm)
        os.replace(tmp, dest)  # onto a missing or empty dir: the data dir appears whole
        _fsync_dir(dest.parent)
    except (OSError, WALError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RestoreError(f"cannot write data-dir {dest}: {e}") from e
    return Restored(str(dest), cfg.member_id, cfg.cluster_id, sm.store.revision, index)


def _write(path: Path, spec: BootSpec, cfg: config.Config, sm: StateMachine) -> int:
    storage = open_backend("file", path)
    try:
        storage.bootstrap(encode_metadata(cfg.member_id, cfg.cluster_id, cfg.name, "new"))
        storage.load()
        entries, hard = initial_entries(spec, storage)
        sm.members.clear()  # the old cluster's membership means nothing to the new one
        sm.removed.clear()
        for e in entries:
            sm.apply_conf_change(ConfChange.decode(e.data))
        conf = ConfState(tuple(sorted(sm.members)))
        assert hard.commit == entries[-1].index and cfg.member_id in sm.members, (hard, conf)
        storage.save_snapshot(WalSnapshot(hard.commit, hard.term,
                                          pack_snapshot_data(conf, sm.snapshot())))
        return hard.commit
    finally:
        storage.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the command ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise config.ConfigError(message)


def parse(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str, config.Config]:
    """FILE and etcdutl's flags -> (file, validated member Config); ConfigError if bad.

    The flags are validated by `config.parse_args`, so restore accepts exactly what the
    member would (same defaults: ``--data-dir`` is ``${name}.etcd``).
    """
    p = _Parser(prog=PROG, allow_abbrev=False, exit_on_error=False,
                description="Build a fresh data dir for a new cluster from a snapshot file.")
    p.add_argument("file", help="a file written by `raftctl snapshot save`")
    for f in FLAGS:
        p.add_argument("--" + f, "-" + f, dest=f.replace("-", "_"), default=None)
    try:
        ns = p.parse_args(list(argv))
    except argparse.ArgumentError as e:
        raise config.ConfigError(str(e)) from None
    member_argv: list[str] = []
    for f in FLAGS:
        value = getattr(ns, f.replace("-", "_"))
        if value is not None:
            member_argv += ["--" + f, value]
    wanted = {config.env_name(f) for f in FLAGS}
    return ns.file, config.parse_args(member_argv,
                                      {k: v for k, v in env.items() if k in wanted})


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 restored; 2 bad flags; 1 a bad file or data dir (nothing written)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(f"usage: {PROG} FILE --name N --initial-cluster N=URL,... "
              "--initial-cluster-token T --initial-advertise-peer-urls URL --data-dir D")
        return 0
    try:
        file, cfg = parse(args, os.environ)
    except config.ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    try:
        r = restore(file, cfg)
    except RestoreError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(f"restored snapshot {file} into {r.data_dir}: member {r.member_id:x} of cluster "
          f"{r.cluster_id:x}, revision {r.revision}, raft index {r.index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
