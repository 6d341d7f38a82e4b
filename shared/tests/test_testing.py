"""The pytest plugin itself: the network guard and the two-process DDP runner."""

import os
import socket

import pytest

from dlshared.processes import allreduce_selftest, network_selftest, run_distributed
from dlshared.testing import NetworkBlocked


def test_offline_env():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("address", [("example.com", 80), ("8.8.8.8", 53), ("2001:4860:4860::8888", 53)])
def test_network_is_refused(address):
    with pytest.raises(NetworkBlocked):
        socket.create_connection(address, timeout=1)
    with pytest.raises(NetworkBlocked):  # an OSError: what offline-aware code catches
        socket.getaddrinfo(address[0], address[1])


def test_raw_socket_to_public_ip_is_refused():
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect(("8.8.8.8", 53))
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect_ex(("8.8.8.8", 53))


def test_udp_and_the_low_level_socket_module_are_refused_too():
    import _socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(NetworkBlocked):
        s.sendto(b"x", ("8.8.8.8", 53))
    raw = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkBlocked):
            raw.connect(("1.1.1.1", 443))
    finally:
        raw.close()
    with pytest.raises(NetworkBlocked):
        _socket.getaddrinfo("example.com", 443)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # loopback datagrams still work
        s.sendto(b"x", ("127.0.0.1", 9))


def test_distributed_workers_are_offline_too():
    assert run_distributed(network_selftest, nprocs=1) == ["blocked"]


def test_run_distributed_all_reduce():
    # rank r contributes 2 * (r + 1): 2 + 4
    assert run_distributed(allreduce_selftest, 2.0) == [(0, 2, 6.0), (1, 2, 6.0)]
