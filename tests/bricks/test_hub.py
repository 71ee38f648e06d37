"""Bricks to and from the Hub, tested offline against a fake Hub kept in a local directory."""

import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch

from brickwork.bricks import BrickRepository
from brickwork.cli import main
from tests.ops.test_combine import make_lora


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake Hub: uploads land in hub/<user>/<name>; downloads add the Hub's extra files."""
    root = tmp_path / "hub"

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=False, exist_ok=False):
            (root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

        def upload_folder(self, folder_path, repo_id):
            shutil.copytree(folder_path, root / repo_id, dirs_exist_ok=True)
            return f"https://hub.test/{repo_id}"

    def snapshot_download(repo_id, revision=None, token=None, local_dir=None):
        if not (root / repo_id).is_dir():
            raise OSError(f"Repository Not Found for url: https://hub.test/{repo_id}")
        shutil.copytree(root / repo_id, local_dir)
        (Path(local_dir) / ".gitattributes").write_text("*.safetensors filter=lfs\n")
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return root


def test_push_then_pull_round_trips_with_a_card(tiny_llama, hub, tmp_path, capsys):
    repo = BrickRepository(tmp_path / "repo")
    brick = make_lora(tiny_llama, "styled", 1)
    brick.metrics = {"heldout_loss": 1.25}
    brick.provenance["recipe"] = {"method": "linear"}
    repo.add(brick)
    assert main(["bricks", "push", "styled", "--repo", str(repo.root), "--to", "me/styled"]) == 0
    card = (hub / "me" / "styled" / "README.md").read_text()
    assert "library_name: peft" in card and "| heldout_loss | 1.25 |" in card
    assert "method: linear" in card and brick.base_model in card
    other = tmp_path / "other"
    assert main(["bricks", "pull", "me/styled", "--repo", str(other), "--name", "copy"]) == 0
    pulled = BrickRepository(other).get("copy")
    assert pulled.provenance["pulled_from"] == "me/styled@main"
    assert pulled.tensors.keys() == brick.tensors.keys()
    assert all(torch.equal(pulled.tensors[k], v) for k, v in brick.tensors.items())
    assert BrickRepository(other).verify() == {"copy": []}


def test_pull_refuses_a_damaged_or_missing_brick(tiny_llama, hub, tmp_path, capsys):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_lora(tiny_llama, "styled", 1))
    assert main(["bricks", "push", "styled", "--repo", str(repo.root), "--to", "me/s"]) == 0
    weights = hub / "me" / "s" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    capsys.readouterr()
    assert main(["bricks", "pull", "me/s", "--repo", str(repo.root), "--name", "x"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["bricks", "pull", "me/none", "--repo", str(repo.root), "--name", "y"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot download me/none")
    assert main(["bricks", "pull", "me/s", "--repo", str(repo.root), "--name", "styled"]) == 2
    assert [b["name"] for b in repo.list()] == ["styled"]
