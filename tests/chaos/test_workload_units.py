"""Workload configuration, endpoint safety, value encoding and outcome classification."""

from __future__ import annotations

import pytest

from chaos.history import FAIL, INFO
from chaos.workload import (
    WorkloadConfig,
    WorkloadError,
    classify,
    decode_list,
    encode_list,
    require_loopback,
)
from cluster.errors import (
    EtcdError,
    IndeterminateError,
    NoLeader,
    ProtocolError,
    Timeout,
    Unavailable,
)


def test_loopback_endpoints_only() -> None:
    assert require_loopback(["127.0.0.1:2379", "http://localhost:1", "http://[::1]:3"]) == \
        ["http://127.0.0.1:2379", "http://localhost:1", "http://[::1]:3"]
    for bad in (["http://10.0.0.1:2379"], ["http://etcd.example.com:2379"], []):
        with pytest.raises(WorkloadError):
            require_loopback(bad)


@pytest.mark.parametrize("kw", [
    {"kind": "queue"}, {"keys": 0}, {"concurrency": 0}, {"max_ops": 0}, {"duration": 0},
    {"timeout": -1}, {"rate": -1}, {"read_ratio": 1.5}, {"cas_ratio": -0.1},
])
def test_bad_configuration_is_rejected(kw: dict) -> None:
    with pytest.raises(WorkloadError):
        WorkloadConfig(**kw)


def test_list_encoding_round_trips_and_keeps_garbage_visible() -> None:
    assert decode_list(encode_list([3, 1, 2]).encode()) == [3, 1, 2]
    assert decode_list(b"") == []
    assert decode_list(b"1,x") == "1,x"  # the checker reports it; nothing is hidden


def test_classification_of_failures() -> None:
    assert classify(IndeterminateError("t", endpoint="e", path="p"), write=True) == INFO
    assert classify(Unavailable("down"), write=True) == FAIL
    assert classify(NoLeader(14, "etcdserver: no leader"), write=True) == FAIL
    assert classify(Timeout("before sending"), write=True) == FAIL
    assert classify(EtcdError(3, "bad request", http_status=400), write=True) == FAIL
    assert classify(EtcdError(13, "internal", http_status=500), write=True) == INFO
    assert classify(ProtocolError("garbage answer"), write=True) == INFO
    assert classify(OSError("reset"), write=True) == INFO
    # a read that did not answer constrains nothing, whatever went wrong
    assert classify(ProtocolError("garbage answer"), write=False) == FAIL
