"""LoRA options from the command line: alpha, dropout and target modules reach the PEFT adapter,
a regex of module names reaches PEFT as a regex, and target modules that match nothing are refused
in one line."""

import re

from brickwork.bricks import BrickRepository
from brickwork.bricks.train import LoraSettings, train_task_brick
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


def test_a_regex_of_module_names_reaches_peft_as_a_regex(tiny_llama, tiny_samples):
    # the retrieval benchmark's targets: the attention and MLP projections of the last layer only
    last = tiny_llama.model.config.num_hidden_layers - 1
    regex = rf".*\.layers\.{last}\.(self_attn|mlp)\.(q|v|down)_proj"
    settings = LoraSettings(steps=1, batch_size=2, target_modules=regex)
    brick = train_task_brick(
        tiny_llama,
        tiny_samples[:4],
        tiny_samples[4:6],
        "r",
        "toy",
        settings=settings,
        progress=False,
    )
    assert brick.spec["peft_config"]["target_modules"] == regex
    layers = {re.search(r"layers\.(\d+)\.", k).group(1) for k in brick.tensors if "lora_" in k}
    kinds = {re.search(r"\.(\w+_proj)\.lora_", k).group(1) for k in brick.tensors if "lora_" in k}
    assert layers == {str(last)} and kinds == {"q_proj", "v_proj", "down_proj"}
