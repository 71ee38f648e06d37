"""A LoRA brick names where its base model lives (base_model_name_or_path), so PEFT's
AutoPeftModelForCausalLM rebuilds base + adapter from the brick directory alone."""

from pathlib import Path

import torch
from peft import AutoPeftModelForCausalLM

from brickwork.bricks.attach import attach
from brickwork.bricks.format import save_brick
from brickwork.bricks.train import LoraSettings, train_task_brick
from brickwork.data.sample import select_split
from brickwork.models import load_model

FAST = LoraSettings(steps=4, lr=5e-3, batch_size=4, eval_every=4)


def test_auto_peft_rebuilds_a_locally_pathed_base(tiny_model_dirs, tiny_samples, tmp_path):
    loaded = load_model(tiny_model_dirs["llama"])
    train, heldout = select_split(tiny_samples, "train"), select_split(tiny_samples, "test")
    brick = train_task_brick(loaded, train, heldout, "t", "toy", settings=FAST, progress=False)
    assert brick.spec["peft_config"]["base_model_name_or_path"] == str(
        Path(tiny_model_dirs["llama"]).resolve()
    )
    save_brick(brick, tmp_path / "t")
    rebuilt = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "t").eval()
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), attach(loaded, [brick]):
        ours = loaded.model(input_ids=ids).logits
    with torch.no_grad():
        theirs = rebuilt(input_ids=ids).logits
    torch.testing.assert_close(theirs, ours)
    assert not torch.equal(theirs, loaded.model(input_ids=ids).logits)  # the adapter acts
