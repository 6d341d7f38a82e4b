"""Launching a demo: loopback, the next free port when the asked one is taken, no public link unless asked."""

import socket

from dlshared.demo import free_port_from, launch
from dlshared.testing import free_port


def test_a_taken_port_moves_the_demo_to_the_next_free_one(monkeypatch):
    import gradio as gr

    monkeypatch.setenv("GRADIO_SHARE", "true")  # a notebook host's default must not open a public tunnel
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert free_port_from("127.0.0.1", port) != port
        with gr.Blocks() as blocks:
            gr.Markdown("hello")
        url = launch(blocks, port=port, block=False)
        try:
            assert url.startswith("http://127.0.0.1:") and f":{port}/" not in url
            assert blocks.share is False and blocks.share_url is None
            assert blocks.max_file_size is not None
        finally:
            blocks.close()


def test_a_free_port_is_kept():
    port = free_port()
    assert free_port_from("127.0.0.1", port) == port
