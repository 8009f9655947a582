"""One real etcd 3.4 member (Debian's etcd-server) on free loopback ports: the oracle the
API and watch tests compare raftnode's answers against."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.cluster.etcd_cluster import ETCD, free_ports

__all__ = ["ETCD", "HAVE_ETCD", "single_etcd"]

HAVE_ETCD = os.access(ETCD, os.X_OK)


@contextlib.asynccontextmanager
async def single_etcd(tmp_path: Path) -> AsyncIterator[str]:
    """Start a one-member etcd with its data in ``tmp_path``; yield its client URL."""
    cport, pport = free_ports(2)
    curl, purl = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    log = open(tmp_path / "etcd.log", "wb")  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen(
        [ETCD, "--name", "default", "--data-dir", str(tmp_path / "data"),
         "--listen-client-urls", curl, "--advertise-client-urls", curl,
         "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
         "--initial-cluster", f"default={purl}"], stdout=log, stderr=log)
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.post(curl + "/v3/kv/range", data=b'{"key":"AA=="}') as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("etcd did not start: " + (tmp_path / "etcd.log").read_text())
        yield curl
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
