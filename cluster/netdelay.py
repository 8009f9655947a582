"""A packet delayer for kernels without ``sch_netem``: NFQUEUE over raw netlink, stdlib only.

Run inside a member's network namespace (``cluster.netns.set_delay`` starts it) next to an
``iptables -j NFQUEUE --queue-num N --queue-bypass`` rule on the member's egress. Each packet
the kernel queues is held ``--delay-ms`` and then accepted. Packet ids grow in arrival order
and the delay is constant, so one batch verdict ("accept every id up to k") releases all that
are due: one syscall per wake-up, not per packet, and a verdict message lost to a full
socket buffer is covered by the next batch.

Only packet metadata is copied to user space (``NFQNL_COPY_META``), never payloads.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
NFGEN = struct.Struct("!BBH")  # family, version, res_id (network order)
NLA = struct.Struct("=HH")  # len, type


def _attr(kind: int, payload: bytes) -> bytes:
    raw = NLA.pack(NLA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(msg: int, queue: int, attrs: bytes, *, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = NFGEN.pack(socket.AF_UNSPEC, 0, queue) + attrs
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags,
                          seq, 0) + body


def _parse_packet_ids(data: bytes) -> list[int]:
    """Packet ids of every NFQNL_MSG_PACKET in one recv'd buffer (raises on netlink errors)."""
    ids = []
    off = 0
    while off + NLMSG_HDR.size <= len(data):
        length, kind, _, _, _ = NLMSG_HDR.unpack_from(data, off)
        if length < NLMSG_HDR.size:
            break
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, off + NLMSG_HDR.size)
            if code:
                raise OSError(-code, f"netlink: {os.strerror(-code)}")
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + NLMSG_HDR.size + NFGEN.size
            while a + NLA.size <= off + length:
                alen, akind = NLA.unpack_from(data, a)
                if alen < NLA.size:
                    break
                if akind & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, a + NLA.size)[0])
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ids


class Delayer:
    """Holds queued packets for a fixed delay, then accepts them in batches."""

    def __init__(self, queue: int, delay_ms: int) -> None:
        assert delay_ms > 0, delay_ms
        self.queue = queue
        self.delay = delay_ms / 1000.0
        self.pending: collections.deque[tuple[float, int]] = collections.deque()
        self.last_id = 0
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        with contextlib.suppress(OSError):  # root may go past rmem_max; plain size otherwise
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
        self.sock.bind((0, 0))

    def _config(self, attrs: bytes) -> None:
        self.seq += 1
        self.sock.send(_message(NFQNL_MSG_CONFIG, self.queue, attrs, seq=self.seq,
                                flags=NLM_F_REQUEST | NLM_F_ACK))
        _parse_packet_ids(self.sock.recv(65536))  # raises when the kernel refused

    def bind(self) -> None:
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
        self._config(_attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 100_000)))

    def accept_through(self, packet_id: int) -> None:
        self.seq += 1
        self.sock.send(_message(NFQNL_MSG_VERDICT_BATCH, self.queue,
                                _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT,
                                                                    packet_id)), seq=self.seq))

    def release_due(self, now: float) -> None:
        due = None
        while self.pending and self.pending[0][0] <= now:
            due = self.pending.popleft()[1]
        if due is not None:
            self.accept_through(due)

    def run(self, stop: list[bool]) -> None:
        while not stop[0]:
            now = time.monotonic()
            wait = self.pending[0][0] - now if self.pending else 0.1
            readable, _, _ = select.select([self.sock], [], [], max(wait, 0.0))
            if readable:
                try:
                    data = self.sock.recv(1 << 20)
                except OSError as e:  # ENOBUFS: messages lost, packets still queued
                    if e.errno != errno.ENOBUFS:
                        raise
                    data = b""
                due = time.monotonic() + self.delay
                for pid in _parse_packet_ids(data):
                    self.pending.append((due, pid))
                    self.last_id = max(self.last_id, pid)
            self.release_due(time.monotonic())

    def flush(self) -> None:
        """Accept everything still held, so stopping the delay loses no packet."""
        if self.last_id:
            self.accept_through(self.last_id)
        self.pending.clear()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.netdelay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--delay-ms", type=int, required=True)
    p.add_argument("--ready-file", help="written once the queue is bound")
    args = p.parse_args(argv)
    if args.delay_ms <= 0:
        p.error("--delay-ms must be positive")
    stop = [False]

    def on_term(*_: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    d = Delayer(args.queue, args.delay_ms)
    try:
        d.bind()
    except OSError as e:
        print(f"netdelay: cannot bind queue {args.queue}: {e}", file=sys.stderr)
        return 1
    if args.ready_file:
        Path(args.ready_file).write_text(f"{os.getpid()}\n")
    try:
        d.run(stop)
    finally:
        d.flush()
        if args.ready_file:
            Path(args.ready_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
