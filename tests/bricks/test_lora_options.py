"""LoRA options from the command line: alpha, dropout and target modules reach the PEFT adapter,
and target modules that match nothing are refused in one line."""

from brickwork.bricks import BrickRepository
from brickwork.cli import main
from tests.test_cli import write_data


def test_train_task_takes_alpha_and_target_modules(tiny_model_dirs, tiny_samples, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    repo = tmp_path / "r"
    common = ["train", "task", "--data", data, "--purpose", "toy", "--steps", "1", "--quiet"]
    common += ["--model", tiny_model_dirs["llama"], "--repo", str(repo)]
    options = ["--alpha", "4", "--dropout", "0.1", "--target-modules", "q_proj, v_proj"]
    assert main([*common, "--name", "t", *options]) == 0
    config = BrickRepository(repo).get("t").spec["peft_config"]
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert config["lora_alpha"] == 4 and config["lora_dropout"] == 0.1
    capsys.readouterr()
    assert main([*common, "--name", "u", "--target-modules", "no_such_proj"]) == 2
    err = capsys.readouterr().err
    assert "\nerror: LoRA target modules" in "\n" + err and "Traceback" not in err
    assert [b["name"] for b in BrickRepository(repo).list()] == ["t"]
