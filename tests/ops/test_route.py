"""Purpose embeddings and retrieval on the tiny llama."""

import json
from dataclasses import replace

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from brickwork import BrickworkError
from brickwork.bricks import BrickRepository, attach, load_brick, save_brick
from brickwork.cli import main
from brickwork.ops.retrieval import RetrievalIndex, retrieve
from brickwork.ops.route import (
    EMBEDDING_KEY,
    SECOND_MOMENT_KEY,
    STATES_KEY,
    embed_prompts,
    prompt_features,
    with_embedding,
)
from tests.ops.test_combine import make_lora
from tests.tiny import build_tiny_model

TASKS = {
    "digits": ["123 456 789", "42 17 99 3", "1000 2000 3000", "7 8 9 10 11", "31415 92653"],
    "letters": ["abc def ghi", "hello world again", "the quick brown fox", "lorem ipsum dolor"],
    "symbols": ["!!! ??? ###", "@@ $$ %% ^^", "&& ** (( ))", "++ -- == //", "<< >> {{ }}"],
}
QUERIES = {
    "digits": "9876 54 3210 1789",
    "letters": "jumps over the lazy dog",
    "symbols": "** ## !! ?? @@ ++ $$",
}


@pytest.fixture
def described(tiny_llama):
    """Three bricks embedded at the token-embedding layer, where a random model's states still
    reflect its input's characters (its deeper states are noise)."""
    bricks = []
    for seed, (task, prompts) in enumerate(TASKS.items(), start=1):
        brick = make_lora(tiny_llama, task, seed)
        bricks.append(
            with_embedding(
                tiny_llama,
                brick,
                prompts,
                f"a brick for {task}",
                layer=0,
                template="Do it: {input}",
            )
        )
    return bricks


def test_embedding_is_the_mean_prompt_state(tiny_llama, described):
    brick = described[0]
    expected = embed_prompts(tiny_llama, TASKS["digits"], layer=0).mean(dim=0)
    assert torch.allclose(brick.tensors[EMBEDDING_KEY], expected)
    assert brick.spec["purpose_embedding"]["n_prompts"] == len(TASKS["digits"])
    states = embed_prompts(tiny_llama, TASKS["digits"], layer=0).double()
    assert torch.allclose(brick.tensors[SECOND_MOMENT_KEY].double(), (states**2).mean(0), rtol=1e-5)
    assert brick.description == "a brick for digits"
    assert EMBEDDING_KEY not in make_lora(tiny_llama, "plain", 1).tensors  # input not mutated


def test_pooling_is_per_prompt_and_ignores_padding(tiny_llama):
    prompts = ["a much longer prompt than the other one", "short"]
    together = prompt_features(tiny_llama, prompts, [-1, 1])
    for i, prompt in enumerate(prompts):
        alone = prompt_features(tiny_llama, [prompt], [-1, 1])
        for key in together:
            assert torch.allclose(together[key][i], alone[key][0], atol=1e-5), key
    assert not torch.allclose(together[(-1, "mean")], together[(-1, "last")])


def test_states_equal_hidden_states_and_leave_no_hooks(tiny_llama):
    prompts = ["hello there", "abc"]

    def hooks():  # other tests may have left transformers' own output-recording hooks
        return [
            (len(m._forward_hooks), len(m._forward_pre_hooks)) for m in tiny_llama.model.modules()
        ]

    before = hooks()
    features = prompt_features(tiny_llama, prompts, [0, 1, 2, -1])
    assert hooks() == before
    fresh = build_tiny_model("llama")  # transformers leaves hooks after output_hidden_states
    ids = tiny_llama.tokenizer(prompts[:1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        states = fresh(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in (0, 1, 2):
        assert torch.allclose(features[(layer, "mean")][0], states[layer][0, 1:].mean(0), atol=1e-5)
        assert torch.allclose(features[(layer, "last")][0], states[layer][0, -1], atol=1e-5)
    assert torch.equal(features[(2, "mean")], features[(-1, "mean")])
    with pytest.raises(BrickworkError, match="out of range"):
        prompt_features(tiny_llama, prompts, [3])


def test_embedding_survives_save_and_peft_still_loads(tiny_llama, described, tmp_path):
    brick = described[0]
    folder = save_brick(brick, tmp_path / "digits")
    loaded = load_brick(folder)
    assert torch.equal(loaded.tensors[EMBEDDING_KEY], brick.tensors[EMBEDDING_KEY])
    assert torch.equal(loaded.tensors[SECOND_MOMENT_KEY], brick.tensors[SECOND_MOMENT_KEY])
    assert loaded.tensors[STATES_KEY].shape == (len(TASKS["digits"]), 32)
    assert loaded.description == brick.description
    assert loaded.spec["prompt_template"] == "Do it: {input}"
    assert not any(
        k.startswith("brickwork.") for k in load_file(folder / "adapter_model.safetensors")
    )
    assert "purpose_embedding" not in json.loads((folder / "adapter_config.json").read_text())
    ids = torch.arange(5)[None]
    with attach(tiny_llama, [loaded]) as model, torch.no_grad():
        attached = model(input_ids=ids).logits
    with torch.no_grad():
        direct = PeftModel.from_pretrained(build_tiny_model("llama"), folder)(input_ids=ids).logits
    assert torch.allclose(attached, direct, atol=1e-5)


def test_retrieval_finds_the_task_of_unseen_instructions(tiny_llama, described):
    for task, query in QUERIES.items():
        matches = retrieve(tiny_llama, described, query, k=2)
        assert matches[0].name == task, (task, matches)
        assert matches[0].score >= matches[1].score
    task_level = retrieve(tiny_llama, described, TASKS["letters"], k=3)
    assert task_level[0].name == "letters" and task_level[0].score == pytest.approx(1.0, abs=0.05)
    assert len(task_level) == 3


def test_repository_index_equals_the_in_memory_one(tiny_llama, described, tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    for brick in described:
        repo.add(brick)
    repo.add(make_lora(tiny_llama, "no-embedding", 9))  # skipped: nothing to match on
    from_repo = RetrievalIndex.from_repository(repo, tiny_llama.fingerprint)
    in_memory = RetrievalIndex.from_bricks(described)
    assert from_repo.names == in_memory.names
    assert torch.allclose(from_repo.matrix, in_memory.matrix)
    query = from_repo.embed(tiny_llama, QUERIES["symbols"])
    assert from_repo.query(query, 1)[0].name == "symbols"


def test_bad_retrieval_input_is_refused(tiny_llama, described):
    with pytest.raises(BrickworkError, match="no bricks"):
        retrieve(tiny_llama, [make_lora(tiny_llama, "bare", 1)], "x")
    settings = {**described[0].spec["purpose_embedding"], "layer": 1}
    other = replace(described[0], spec={**described[0].spec, "purpose_embedding": settings})
    with pytest.raises(BrickworkError, match="different base models or settings"):
        RetrievalIndex.from_bricks([other, described[1]])
    with pytest.raises(BrickworkError, match="k must be"):
        retrieve(tiny_llama, described, "x", k=0)
    with pytest.raises(BrickworkError, match="non-empty"):
        with_embedding(tiny_llama, described[0], ["ok", "  "], "d")
    with pytest.raises(BrickworkError, match="description"):
        with_embedding(tiny_llama, described[0], ["ok"], "")
    foreign = replace(described[0], base_model="sha256:other")
    with pytest.raises(BrickworkError, match="base model"):
        with_embedding(tiny_llama, foreign, ["ok"], "d")


def test_cli_retrieve(tiny_llama, tiny_model_dirs, described, tmp_path, capsys):
    repo = BrickRepository(tmp_path / "repo")
    for brick in described:
        repo.add(brick)
    argv = [
        "bricks",
        "retrieve",
        QUERIES["digits"],
        "--repo",
        str(repo.root),
        "-k",
        "2",
        "--model",
        tiny_model_dirs["llama"],
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["score", "fit", "brick"]
    assert len(lines) == 3 and lines[1].split()[2] == "digits"
    assert main([*argv, "--scoring", "centre"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[2] == "digits"
    assert main(["bricks", "retrieve", "--repo", str(repo.root)]) == 2


@pytest.mark.slow
def test_default_model_retrieves_by_purpose():
    from brickwork import load_model
    from brickwork.bricks import steering_brick

    loaded = load_model("smollm2-135m-instruct")
    prompts = {
        "translate": [
            "Translate into German: The dog runs.",
            "Translate into German: I am tired.",
            "Translate into German: A red car.",
            "Translate into German: Good night.",
        ],
        "python": [
            "Write a Python function that reverses a list.",
            "def add(a, b):\n    return",
            "Fix this Python loop: for i in range(3) print(i)",
            "import os\nos.listdir(",
        ],
        "arithmetic": [
            "What is 17 times 23?",
            "Compute 144 divided by 12.",
            "Add 38 and 45.",
            "What is 9 squared minus 5?",
        ],
    }
    bricks = [
        with_embedding(
            loaded,
            steering_brick(name, name, loaded.fingerprint, torch.zeros(1, 576), [0]),
            texts,
            f"{name} brick",
        )
        for name, texts in prompts.items()
    ]
    queries = {
        "translate": "Translate into German: The house is big.",
        "python": "Write a Python function that sorts a dictionary by value.",
        "arithmetic": "What is 56 plus 77?",
    }
    for name, query in queries.items():
        assert retrieve(loaded, bricks, query, k=1)[0].name == name


def test_cli_describe_adds_the_embedding(tiny_llama, tiny_model_dirs, tmp_path, capsys):
    repo = BrickRepository(tmp_path / "repo")
    for seed, task in enumerate(TASKS, start=1):
        repo.add(make_lora(tiny_llama, task, seed))
    for task, prompts in TASKS.items():
        path = tmp_path / f"{task}.txt"
        path.write_text("\n".join(prompts) + "\n")
        argv = [
            "describe",
            task,
            "--repo",
            str(repo.root),
            "--prompts",
            str(path),
            "--description",
            f"{task} brick",
            "--model",
            tiny_model_dirs["llama"],
        ]
        assert main(argv) == 0
    brick = repo.get("digits")
    assert brick.description == "digits brick" and EMBEDDING_KEY in brick.tensors
    assert brick.spec["purpose_embedding"]["n_prompts"] == len(TASKS["digits"])
    index = RetrievalIndex.from_repository(repo)
    assert index.names == ("digits", "letters", "symbols")
    assert (
        main(
            [
                "describe",
                "nope",
                "--repo",
                str(repo.root),
                "--prompts",
                str(path),
                "--description",
                "x",
                "--model",
                tiny_model_dirs["llama"],
            ]
        )
        == 2
    )


def test_standardisation_uses_the_pooled_prompt_statistics(tiny_llama, described):
    index = RetrievalIndex.from_bricks(described, scoring="standardise")
    assert index.scoring == "standardise"
    states = torch.cat([embed_prompts(tiny_llama, p, layer=0).double() for p in TASKS.values()])
    mean, std = states.mean(0), states.std(0, unbiased=False)
    assert torch.allclose(index.shift, mean, atol=1e-5)
    assert torch.allclose(index.scale, std, atol=1e-4)
    centroids = torch.stack(
        [embed_prompts(tiny_llama, p, layer=0).double().mean(0) for p in TASKS.values()]
    )
    expected = (centroids - mean) / std
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert torch.allclose(index.matrix, expected, atol=1e-4)
    query = embed_prompts(tiny_llama, [QUERIES["digits"]], layer=0)[0]
    z = (query.double() - mean) / std
    scores = expected @ (z / z.norm())
    assert index.query(query, 1)[0].score == pytest.approx(float(scores.max()), abs=1e-4)


def test_lda_is_linear_discriminant_analysis_with_shrinkage(tiny_llama, described):
    from sklearn.covariance import ledoit_wolf

    index = RetrievalIndex.from_bricks(described)
    assert index.scoring == "lda"
    states = [embed_prompts(tiny_llama, p, layer=0).double() for p in TASKS.values()]
    means = torch.stack([s.mean(0) for s in states])
    residuals = torch.cat([s - s.mean(0) for s in states])
    spread = residuals.pow(2).mean(0).sqrt()
    shrunk = torch.from_numpy(ledoit_wolf((residuals / spread).numpy(), assume_centered=True)[0])
    covariance = spread[:, None] * shrunk * spread[None]
    query = embed_prompts(tiny_llama, [QUERIES["letters"]], layer=0)[0].double()
    inverse = torch.linalg.inv(covariance)
    discriminants = torch.stack([query @ inverse @ m - 0.5 * m @ inverse @ m for m in means])
    posterior = torch.softmax(discriminants, 0)
    matches = index.query(query.float(), 3)
    assert [m.name for m in matches] == [list(TASKS)[i] for i in posterior.argsort(descending=True)]
    expected = posterior.sort(descending=True).values.tolist()
    assert [m.score for m in matches] == pytest.approx(expected, abs=1e-4)
    assert sum(m.score for m in matches) == pytest.approx(1.0)


def test_index_without_statistics_falls_back(tiny_llama, described):
    no_states = [
        replace(b, tensors={k: v for k, v in b.tensors.items() if k != STATES_KEY})
        for b in described
    ]
    assert RetrievalIndex.from_bricks(no_states).scoring == "standardise"
    one_each = [
        replace(b, tensors={**b.tensors, STATES_KEY: b.tensors[EMBEDDING_KEY][None]})
        for b in described
    ]
    assert RetrievalIndex.from_bricks(one_each).scoring == "standardise"  # no within variation
    old = [
        replace(
            b,
            tensors={
                k: v for k, v in b.tensors.items() if k not in (SECOND_MOMENT_KEY, STATES_KEY)
            },
        )
        for b in described
    ]
    index = RetrievalIndex.from_bricks(old)
    assert index.scoring == "centre" and torch.equal(index.scale, torch.ones(32).double())
    centre = RetrievalIndex.from_bricks(described, scoring="centre")
    assert torch.allclose(index.matrix, centre.matrix)
    assert retrieve(tiny_llama, old, QUERIES["symbols"], k=1)[0].name == "symbols"
    with pytest.raises(BrickworkError, match="scoring"):
        RetrievalIndex.from_bricks(described, scoring="whiten")


def test_index_saves_to_safetensors_and_refuses_bad_queries(tiny_llama, described, tmp_path):
    index = RetrievalIndex.from_bricks(described)
    path = index.save(tmp_path / "index.safetensors")
    again = RetrievalIndex.load(path)
    assert again.names == index.names and again.descriptions == index.descriptions
    assert torch.equal(again.matrix, index.matrix) and torch.equal(again.bias, index.bias)
    assert (again.layer, again.pooling, again.scoring) == (0, "mean", "lda")
    assert retrieve(tiny_llama, again, QUERIES["letters"], k=1)[0].name == "letters"
    with pytest.raises(BrickworkError, match="NaN"):
        index.query(torch.full((32,), float("nan")))
    with pytest.raises(BrickworkError, match="shape"):
        index.query(torch.zeros(5))
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(BrickworkError, match="not a brickwork retrieval index"):
        RetrievalIndex.load(other)


def test_single_brick_index_is_not_centred_away(tiny_llama, described):
    index = RetrievalIndex.from_bricks(described[:1])
    assert torch.isfinite(index.matrix).all() and float(index.matrix.norm()) == pytest.approx(1.0)
    assert retrieve(tiny_llama, described[:1], "anything", k=3)[0].name == "digits"
