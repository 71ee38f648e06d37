"""Recipe files: a command's options from YAML, command-line flags override them, the recipe is
kept in the saved brick's provenance, and bad recipes are one error line."""

from brickwork.bricks import BrickRepository
from brickwork.cli import main
from brickwork.ops.combine.lora import lora_deltas
from tests.ops.test_combine import assert_deltas_close, make_lora, weighted_sum
from tests.test_cli import write_data


def _repo(tiny_llama, tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    parents = [make_lora(tiny_llama, name, seed) for seed, name in enumerate(("a", "b"), 1)]
    for brick in parents:
        repo.add(brick)
    return repo, parents


def test_combine_recipe_with_overrides_and_provenance(tiny_llama, tmp_path, capsys):
    repo, parents = _repo(tiny_llama, tmp_path)
    recipe = tmp_path / "merge.yaml"
    recipe.write_text(
        f"method: linear\nbricks: [a, b]\nweights: [1.0, 0.5]\nname: mixed\nrepo: {repo.root}\n"
    )
    assert main(["combine", str(recipe)]) == 0
    merged = repo.get("mixed")
    assert merged.provenance["recipe"]["weights"] == [1.0, 0.5]
    assert_deltas_close(lora_deltas(merged), weighted_sum(parents, [1.0, 0.5]))
    assert main(["combine", str(recipe), "--name", "other", "--weights", "1,1"]) == 0
    assert_deltas_close(lora_deltas(repo.get("other")), weighted_sum(parents, [1.0, 1.0]))
    capsys.readouterr()
    recipe.write_text("method: linear\nbrick_list: [a]\n")
    assert main(["combine", str(recipe)]) == 2
    assert "unknown options brick_list" in capsys.readouterr().err
    recipe.write_text("- just\n- a list\n")
    assert main(["combine", str(recipe)]) == 2
    assert "must be a mapping" in capsys.readouterr().err
    recipe.write_text("method: [unclosed\n")
    assert main(["combine", str(recipe)]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read the recipe")


def test_combine_default_keeps_every_parent_at_full_strength(tiny_llama, tmp_path, capsys):
    repo, parents = _repo(tiny_llama, tmp_path)
    argv = ["combine", "linear", "--repo", str(repo.root), "--bricks", "a,b", "--name", "sum"]
    assert main(argv) == 0
    assert "weights 1, 1" in capsys.readouterr().out
    assert_deltas_close(lora_deltas(repo.get("sum")), weighted_sum(parents, [1.0, 1.0]))


def test_train_recipe(tiny_model_dirs, tiny_samples, tmp_path):
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    recipe = tmp_path / "train.yaml"
    recipe.write_text(
        f"data: {data}\nname: t\npurpose: toy\nsteps: 1\nbatch-size: 2\nquiet: true\n"
        f"model: {tiny_model_dirs['llama']}\nrepo: {tmp_path / 'r'}\n"
    )
    assert main(["train", "task", str(recipe), "--rank", "2"]) == 0
    brick = BrickRepository(tmp_path / "r").get("t")
    assert brick.spec["peft_config"]["r"] == 2
    assert brick.provenance["recipe"]["batch_size"] == 2
