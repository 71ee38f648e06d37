"""The command line: a working profile run, and one clear line plus exit 2 on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from brickwork.bricks import BrickRepository
from brickwork.cli import main
from brickwork.profile import load_profile

BRICKWORK = str(Path(sys.executable).parent / "brickwork")


def write_data(path, samples):
    path.write_text("".join(json.dumps(s.__dict__) + "\n" for s in samples))
    return str(path)


def test_models_lists_builtins_and_families(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct (default)" in out and "gemma3-270m" in out
    assert "gpt2" in out and "qwen2" in out


def test_profile_writes_a_profile_and_prints_a_summary(
    tiny_model_dirs, tiny_samples, tmp_path, capsys
):
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    code = main(
        [
            "profile",
            "--model",
            tiny_model_dirs["qwen2"],
            "--data",
            data,
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "12 instances" in out and "normalized activation < 0.2" in out
    profile = load_profile(tmp_path / "out")
    assert profile.meta["command"].startswith("brickwork profile")
    assert profile.meta["family"] == "qwen2" and profile.complete


def test_shards_then_merge_profiles(tiny_model_dirs, tiny_samples, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    for i in range(2):
        assert (
            main(
                [
                    "profile",
                    "--model",
                    tiny_model_dirs["llama"],
                    "--data",
                    data,
                    "--quiet",
                    "--shard",
                    f"{i}/2",
                    "--out",
                    str(tmp_path / f"s{i}"),
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "merge-profiles",
                str(tmp_path / "s0"),
                str(tmp_path / "s1"),
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    assert load_profile(tmp_path / "m").complete


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, t: ["--model", str(t / "missing")], "no such model path"),
        (
            lambda d, t: ["--model", d["llama"], "--data", str(t / "empty.jsonl")],
            "holds no samples",
        ),
        (lambda d, t: ["--model", d["llama"], "--data", str(t / "bad.jsonl")], "malformed JSON"),
        (lambda d, t: ["--model", str(t / "bert")], "unsupported model family 'bert'"),
        (lambda d, t: ["--model", "someone/some-model"], "cannot fetch 'someone/some-model'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tiny_model_dirs, tmp_path, monkeypatch, make_args, message
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "functionality": "m"\n')
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    args = ["profile", *make_args(tiny_model_dirs, tmp_path), "--out", str(tmp_path / "o")]
    result = subprocess.run(
        [BRICKWORK, *args],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_analyze_then_report(tiny_model_dirs, tiny_samples, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    out = tmp_path / "a"
    small = ["--eval-per-functionality", "1", "--curve-per-functionality", "1", "--quiet"]
    code = main(
        ["analyze", "--model", tiny_model_dirs["gpt2"], "--data", data, "--out", str(out), *small]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ablation of top 5%" in printed and "report.html" in printed
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()
    # Reusing the profile with another model is refused in one line.
    code = main(
        [
            "analyze",
            "--model",
            tiny_model_dirs["llama"],
            "--data",
            data,
            *small,
            "--profile",
            str(out / "profile"),
            "--out",
            str(tmp_path / "b"),
        ]
    )
    assert code == 2
    assert "another model" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_train_commands_add_bricks(tiny_model_dirs, tiny_samples, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    (tmp_path / "docs.txt").write_text("Verolia's capital is Quenmar.\nQuenmar lies on a lake.\n")
    (tmp_path / "pos.txt").write_text("thank you kindly\nplease, if you would\n")
    (tmp_path / "neg.txt").write_text("do it now\ngive me that\n")
    common = ["--model", tiny_model_dirs["llama"], "--repo", str(tmp_path / "r"), "--quiet"]
    assert (
        main(
            [
                "train",
                "task",
                "--data",
                data,
                "--name",
                "t",
                "--purpose",
                "toy",
                "--steps",
                "2",
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "knowledge",
                "--data",
                str(tmp_path / "docs.txt"),
                "--name",
                "k",
                "--purpose",
                "facts",
                "--steps",
                "2",
                "--context",
                "chat",
                "--preserve",
                data,
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "steer",
                "--positive",
                str(tmp_path / "pos.txt"),
                "--negative",
                str(tmp_path / "neg.txt"),
                "--layers",
                "0,1",
                "--name",
                "s",
                "--purpose",
                "polite",
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["bricks", "list", "--repo", str(tmp_path / "r")]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("t ", "k ", "s "))
    knowledge = BrickRepository(tmp_path / "r").get("k").provenance
    assert knowledge["context"] == "chat" and knowledge["preserve_hash"].startswith("sha256:")
    # Refused in one line before any training: an existing name, a steer without layers.
    assert main(["train", "task", "--data", data, "--name", "t", "--purpose", "x", *common]) == 2
    pos, neg = str(tmp_path / "pos.txt"), str(tmp_path / "neg.txt")
    assert (
        main(
            [
                "train",
                "steer",
                "--positive",
                pos,
                "--negative",
                neg,
                "--name",
                "s2",
                "--purpose",
                "x",
                *common,
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "train",
                "knowledge",
                "--data",
                str(tmp_path / "none.txt"),
                "--name",
                "k2",
                "--purpose",
                "x",
                *common,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "already in" in err and "no such text file" in err
    assert "brickwork train steer: the following arguments are required: --layers" in err
