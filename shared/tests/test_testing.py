"""The pytest plugin itself: the network guard and the two-process DDP runner."""

import os
import socket
import threading

import pytest

from dlshared.testing import NetworkBlocked, allreduce_selftest, run_distributed


def test_offline_env():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("address", [("example.com", 80), ("8.8.8.8", 53), ("2001:4860:4860::8888", 53)])
def test_network_is_refused(address):
    with pytest.raises(NetworkBlocked):
        socket.create_connection(address, timeout=1)
    with pytest.raises(OSError):  # what offline-aware code catches
        socket.getaddrinfo(address[0], address[1])


def test_raw_socket_to_public_ip_is_refused():
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect(("8.8.8.8", 53))


def test_loopback_works():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def echo():
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(16))

        thread = threading.Thread(target=echo)
        thread.start()
        with socket.create_connection(("localhost", port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(16) == b"ping"
        thread.join(timeout=5)


def test_run_distributed_all_reduce():
    # rank r contributes 2 * (r + 1): 2 + 4
    assert run_distributed(allreduce_selftest, 2.0) == [(0, 2, 6.0), (1, 2, 6.0)]
