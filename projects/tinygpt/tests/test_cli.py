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
    (tmp_path / "short.txt").write_text("too short")
    for name, message in (("latin1.txt", "not utf-8"), ("short.txt", "context length")):
        with pytest.raises(SystemExit):
            main(["train", "--preset", "tiny", "--data", str(tmp_path / name), "--out", str(tmp_path)])
        assert message in capsys.readouterr().err.lower()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", ""], "prompt is empty"),
        (["--prompt", "x" * 40], "shorten it"),
        (["--max-new-tokens", "0"], "max new tokens"),
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "1.5"], "top-p"),
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
