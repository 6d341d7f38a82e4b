"""Launching a demo: loopback, the next free port when the asked one is taken, no public link unless asked; the
files it serves from a scratch folder go when it exits."""

import socket
import subprocess
import sys
from pathlib import Path

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


def test_a_scratch_folder_outlives_the_call_and_goes_with_the_process(tmp_path):
    code = (
        "import sys; from dlshared.demo import scratch_folder\n"
        "folder = scratch_folder('demo-test-'); (folder / 'example.png').write_bytes(b'x'); print(folder)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    folder = Path(out.stdout.strip())
    assert folder.name.startswith("demo-test-") and not folder.exists()  # removed at exit, not left in /tmp
