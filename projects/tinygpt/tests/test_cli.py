"""Errors a user can cause end in one line on stderr and exit code 2; generate streams a completion."""

from __future__ import annotations

import pytest

from tinygpt.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/no/such/file.txt"], "no such file"),
        (["train", "--preset", "huge"], "unknown preset"),
        (["train", "--preset", "tiny", "--max-iters", "0"], "at least 1"),
        (["train", "--preset", "tiny", "--device", "cuda:7"], "cuda"),
        (["generate", "--ckpt", "/no/such/run"], "not a tinygpt run folder"),
        (["bench", "--preset", "huge"], "unknown preset"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_code_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)] if argv[0] == "train" else argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err.lower(), err


def test_text_that_is_not_utf8_or_too_short_is_refused(tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    for name, message in (("latin1.txt", "not utf-8"), ("short.txt", "context length")):
        with pytest.raises(SystemExit):
            main(["train", "--preset", "tiny", "--data", str(tmp_path / name), "--out", str(tmp_path)])
        assert message in capsys.readouterr().err.lower()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", ""], "prompt is empty"),
        (["--prompt", "x" * 40], "shorten it"),
        (["--prompt", "x" * 200_000], "prompts are limited to 100,000 characters"),
        (["--max-new-tokens", "0"], "--max-new-tokens 0: must be at least 1"),
        (["--max-new-tokens", "5000"], "max new tokens must be between 1 and 4096"),
        (["--temperature", "-1"], "--temperature -1.0: must be 0 or more"),
        (["--top-p", "1.5"], "--top-p 1.5: must be greater than 0 and at most 1"),
    ],
)
def test_bad_generation_requests(tiny_run, extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--ckpt", tiny_run["run_dir"], *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_generate_streams_a_completion(tiny_run, capsys):
    main(["generate", "--ckpt", tiny_run["run_dir"], "--prompt", "def ", "--max-new-tokens", "15"])
    out = capsys.readouterr().out
    assert out.startswith("def ") and len(out) > len("def \n")
    greedy = []
    settings = ["--prompt", "import", "--temperature", "0", "--max-new-tokens", "10"]
    for flag in ([], ["--no-cache"]):
        main(["generate", "--ckpt", tiny_run["run_dir"], *settings, *flag])
        greedy.append(capsys.readouterr().out)
    assert greedy[0] == greedy[1]


def test_generated_escape_sequences_never_reach_a_terminal(tiny_run, capsys, monkeypatch):
    """Generated text is data: a model trained on logs may write colour codes, a window title or a screen clear.
    On a terminal they are dropped (even when a sequence arrives one token at a time); piped, the text is kept."""
    import sys

    import tinygpt.serve

    text = "red\x1b[31m!\x1b]0;owned\x07 \x1b[2Jdone\rX\tok\n"

    def one_character_at_a_time(*args, **kwargs):
        yield from (text[:i] for i in range(1, len(text) + 1))

    monkeypatch.setattr(tinygpt.serve, "stream_completion", one_character_at_a_time)
    argv = ["generate", "--ckpt", tiny_run["run_dir"], "--prompt", "say \x1b[1mhi"]
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    main(argv)
    assert capsys.readouterr().out == "say hired! doneX\tok\n\n"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    main(argv)
    assert capsys.readouterr().out == f"say \x1b[1mhi{text}\n"


def test_bench_times_the_train_loop_then_profiles_three_of_its_steps(tmp_path, capsys):
    import json

    main(
        ["bench", "--preset", "tiny", "--steps", "2", "--warmup", "0", "--new-tokens", "0"]
        + ["--profile-out", str(tmp_path)]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"train_tokens_per_s", "mfu"} <= set(result)  # from the timed run, taken without the profiler
    assert result["profile"]["profiled_steps"] == 3 and result["profile"]["flops_per_step"] > 0
    trace = json.loads((tmp_path / "trace.json").read_text(encoding="utf-8"))
    steps = {e["name"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"}  # train()'s optimizer advanced it
    assert "aten::mm" in (tmp_path / "top_ops.txt").read_text(encoding="utf-8")
