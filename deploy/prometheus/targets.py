#!/usr/bin/env python3
"""Turn a raft-cluster file into Prometheus file_sd targets, one per member.

    python3 deploy/prometheus/targets.py .cluster/cluster.json -o deploy/prometheus/targets/local.json

Prometheus re-reads file_sd files when they change, so rerun this after `raft-cluster add`
or `remove` and the new member is scraped without a restart. The output is written to a
temporary file and renamed into place: Prometheus never reads half a file.

Standalone on purpose (stdlib only, no project imports): it runs with any python3, on the
machine where Prometheus runs. Exit status 2 and one line on stderr for a bad cluster file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class TargetsError(ValueError):
    """The cluster file cannot be turned into targets; the text names the file and field."""


def _member_target(path: Path, i: int, m: Any) -> tuple[str, str]:
    if not isinstance(m, dict):
        raise TargetsError(f"{path}: members[{i}] is not an object")
    name, url = m.get("name"), m.get("client_url")
    if not isinstance(name, str) or not name:
        raise TargetsError(f"{path}: members[{i}].name is missing or not a string")
    if not isinstance(url, str):
        raise TargetsError(f"{path}: members[{i}].client_url is missing or not a string")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise TargetsError(f"{path}: members[{i}].client_url {url!r} is not http://host:port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return name, f"{host}:{port}"


def targets(path: Path) -> list[dict[str, Any]]:
    """file_sd groups for every member of the cluster file at ``path``.

    Each member is its own group so it carries its ``member`` label (used in legends);
    ``cluster`` is the cluster's token, which tells two clusters' series apart.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TargetsError(f"{path}: not a JSON cluster file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), list):
        raise TargetsError(f"{path}: no 'members' list (is this a raft-cluster file?)")
    if not doc["members"]:
        raise TargetsError(f"{path}: the cluster has no members")
    cluster = doc.get("token") or doc.get("name") or "raftnode"
    if not isinstance(cluster, str):
        raise TargetsError(f"{path}: 'token' is not a string")
    groups: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, m in enumerate(doc["members"]):
        name, target = _member_target(path, i, m)
        if name in seen:
            raise TargetsError(f"{path}: member name {name!r} appears twice")
        seen.add(name)
        groups.append({"targets": [target], "labels": {"member": name, "cluster": cluster}})
    return groups


def write_atomically(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cluster_file", type=Path, help="a raft-cluster file (D/cluster.json)")
    p.add_argument("-o", "--output", type=Path,
                   help="file_sd JSON file to write (default: standard output)")
    args = p.parse_args(argv)
    try:
        text = json.dumps(targets(args.cluster_file), indent=2) + "\n"
    except TargetsError as exc:
        print(f"targets.py: error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            write_atomically(args.output, text)
        except OSError as exc:
            print(f"targets.py: error: cannot write {args.output}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
