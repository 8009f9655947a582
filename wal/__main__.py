"""``python -m wal``: inspect, verify and repair a WAL directory (like etcd-dump-logs).

    python -m wal dump DIR [--json] [--from-index N]
    python -m wal verify DIR [--index N --term T]    exit 0, or 1 with the error
    python -m wal repair DIR                         exit 0 if the log ends cleanly after
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from wal.decoder import Decoder
from wal.errors import UnexpectedEOFError, WALError
from wal.framing import (
    ENTRY,
    SNAPSHOT,
    STATE,
    RecordType,
    unpack_entry,
    unpack_snapshot,
    unpack_state,
)
from wal.records import SnapshotRecord
from wal.repair import repair
from wal.segment import check_sequence, read_wal_names
from wal.verify import verify


def _dump(dirpath: str, as_json: bool, from_index: int) -> int:
    names = read_wal_names(dirpath)
    if not names:
        print(f"wal: no segment files in {dirpath!r}", file=sys.stderr)
        return 1
    check_sequence(dirpath, names)
    dec = Decoder([os.path.join(dirpath, n) for n in names])
    out = sys.stdout
    if not as_json:
        out.write(f"{'file':<38} {'offset':>10} {'type':<9} {'index':>10} {'term':>6} size\n")
    try:
        for rtype, data, off in dec.records():
            rec: dict[str, object] = {
                "file": os.path.basename(dec.path),
                "offset": off,
                "type": RecordType(rtype).name.lower(),
                "size": len(data),
            }
            if rtype == ENTRY:
                e = unpack_entry(data)
                if e.index < from_index:
                    continue
                rec.update(index=e.index, term=e.term, entry_type=e.type)
            elif rtype == SNAPSHOT:
                s = unpack_snapshot(data)
                rec.update(index=s.index, term=s.term)
            elif rtype == STATE:
                h = unpack_state(data)
                rec.update(term=h.term, vote=h.vote, commit=h.commit)
            if as_json:
                out.write(json.dumps(rec) + "\n")
            else:
                idx = rec.get("index", "")
                term = rec.get("term", "")
                out.write(
                    f"{rec['file']:<38} {off:>10} {rec['type']:<9} {idx!s:>10} {term!s:>6} "
                    f"{len(data)}\n"
                )
    except UnexpectedEOFError as err:
        print(f"torn tail: {err}", file=sys.stderr)
        return 0
    except (WALError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wal", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="print every record: file, offset, type, index, term, size")
    d.add_argument("dir")
    d.add_argument("--json", action="store_true", help="one JSON object per line")
    d.add_argument("--from-index", type=int, default=0, help="skip entries below this index")
    v = sub.add_parser("verify", help="check the log read-only; exit 1 on any error")
    v.add_argument("dir")
    v.add_argument("--index", type=int, default=0, help="snapshot index to start from")
    v.add_argument("--term", type=int, default=0, help="snapshot term to start from")
    r = sub.add_parser("repair", help="truncate a torn tail, keeping a .broken copy")
    r.add_argument("dir")
    a = p.parse_args(argv)
    try:
        if a.cmd == "dump":
            return _dump(a.dir, a.json, a.from_index)
        if a.cmd == "verify":
            hs = verify(a.dir, SnapshotRecord(a.index, a.term))
            print(f"ok: term={hs.term} vote={hs.vote} commit={hs.commit}")
            return 0
        if repair(a.dir):
            print(f"ok: {a.dir} ends cleanly")
            return 0
        print(f"wal: cannot repair {a.dir!r} (not a torn tail, or locked)", file=sys.stderr)
        return 1
    except (WALError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
