"""``raftnode`` / ``python -m raftnode``: start one member with etcd's flags.

``raftnode snapshot restore FILE ...`` is the offline restore (`raftnode.restore`).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from raftnode import config, logs
from raftnode.failpoints import FAILPOINTS, FailpointError, exit_on_panic


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["snapshot", "restore"]:  # etcdutl's offline verb (raftnode/restore.py)
        from raftnode.restore import main as restore_main

        return restore_main(args[2:])
    cfg = config.load(args, os.environ)  # exits 2 with one line on a bad flag
    logs.setup(cfg.log_level, cfg.log_format)
    for name in config.unknown_env(os.environ):
        logs.get_logger("config").warn("unrecognized environment variable", name=name)
    if cfg.enable_failpoints:
        FAILPOINTS.panic_hook = exit_on_panic
    spec = os.environ.get("RAFTNODE_FAILPOINTS", "")
    if spec:
        if not cfg.enable_failpoints:
            print("raftnode: error: RAFTNODE_FAILPOINTS is set but --enable-failpoints is not",
                  file=sys.stderr)
            return 2
        try:
            FAILPOINTS.load_env(spec)
        except FailpointError as e:
            print(f"raftnode: error: RAFTNODE_FAILPOINTS: {e}", file=sys.stderr)
            return 2
    from raftnode.server import serve

    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(cfg))
    return uvloop.run(serve(cfg))


if __name__ == "__main__":
    sys.exit(main())
