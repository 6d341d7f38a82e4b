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


def test_serve_picks_the_ckpt_then_the_newest_run_then_the_shipped_weights_then_trains(tmp_path, monkeypatch):
    from dataclasses import dataclass

    from dlshared import demo

    @dataclass
    class Args:
        ckpt: Path | None = None
        runs: Path = tmp_path / "runs"
        host: str = "127.0.0.1"
        port: int = 7860

    @dataclass
    class Preset:
        out: Path = Path("elsewhere")

    served, trained = [], []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))

    def train(cfg):
        trained.append(cfg.out)
        (cfg.out / "toy" / "new").mkdir(parents=True)
        (cfg.out / "toy" / "new" / "metrics.json").write_text("{}", encoding="utf-8")
        return {"run_dir": str(cfg.out / "toy" / "new")}

    shipped = tmp_path / "weights"
    demo.serve("toy", Args(), lambda run: run, train, Preset(), shipped=shipped)  # nothing trained: shipped, at once
    demo.serve("toy", Args(ckpt=tmp_path / "mine"), lambda run: run, train, Preset(), shipped=shipped)
    demo.serve("toy", Args(), lambda run: run, train, Preset())  # no shipped weights: train the quick preset
    demo.serve("toy", Args(), lambda run: run, train, Preset(), shipped=shipped)  # a run of one's own wins
    assert served == [shipped, tmp_path / "mine", tmp_path / "runs/toy/new", tmp_path / "runs/toy/new"]
    assert trained == [tmp_path / "runs"]
