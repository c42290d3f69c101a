"""The synthetic oracle task: seeded, a proper distribution over content tokens, and its sampler's
empirical NLL equal to its entropy (a statistical test that also rejects a wrong sampler)."""

import math

import pytest
import torch

from hf_seqgan.oracle import OracleTask, oracle_tokenizer, student_nll
from hf_seqgan.tiny import build_tiny_model

SIZE = dict(vocab_size=40, source_length=5, target_length=8)


@pytest.fixture(scope="module")
def task():
    return OracleTask.build(seed=3, **SIZE)


def test_build_and_datasets_are_deterministic_by_seed(task):
    again = OracleTask.build(seed=3, **SIZE)
    other = OracleTask.build(seed=4, **SIZE)
    for (name, a), b, c in zip(task.oracle.state_dict().items(), again.oracle.state_dict().values(), other.oracle.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, c) for a, c in zip(task.oracle.state_dict().values(), other.oracle.state_dict().values()))
    first, same, different = task.sample_dataset(32, seed=1), again.sample_dataset(32, seed=1), task.sample_dataset(32, seed=2)
    assert first["input_ids"] == same["input_ids"] and first["labels"] == same["labels"]
    assert first["labels"] != different["labels"]
    assert first["labels"] != other.sample_dataset(32, seed=1)["labels"]  # another oracle, other targets for the same sources


def test_samples_are_fixed_length_content_tokens_and_scored_consistently(task):
    data = task.sample_dataset(64, seed=5)
    sources, labels = torch.tensor(data["input_ids"]), torch.tensor(data["labels"])
    assert sources.shape == (64, SIZE["source_length"] + 1) and labels.shape == (64, SIZE["target_length"])
    assert (sources[:, -1] == task.tokenizer.eos_token_id).all()
    assert (labels >= len(task.special_token_ids)).all() and (sources[:, :-1] >= len(task.special_token_ids)).all()
    # the log-probs of the sampler equal the oracle's teacher-forced scores of the same samples
    g = torch.Generator().manual_seed(5)  # sample_dataset's draws: the sources, then the targets
    assert torch.equal(task.sample_sources(64, g), sources)
    seqs, logps = task.sample(sources, generator=g)
    assert torch.equal(seqs, labels)
    assert task.nll(sources, labels) == pytest.approx(-logps.mean().item(), abs=1e-5)
    # texts round-trip through the word-level tokenizer
    text = task.tokenizer.decode(data["labels"][0])
    assert task.tokenizer(text_target=text, add_special_tokens=False).input_ids == data["labels"][0]
    # a special token has probability 0 under the oracle
    bad = labels.clone()
    bad[0, 0] = task.tokenizer.eos_token_id
    assert math.isinf(task.nll(sources, bad))


def _z(task, sources, targets):
    """z-score of mean(NLL) - mean(exact entropy) over rows (paired: both along the same samples)."""
    diff = task.nll(sources, targets, reduce=False) - task.entropy(sources, targets, reduce=False)  # (n,)
    return float(diff.mean() / (diff.std() / math.sqrt(diff.numel())))


def test_empirical_nll_of_samples_equals_entropy(task):
    g = torch.Generator().manual_seed(11)
    sources = task.sample_sources(600, g)
    targets, _ = task.sample(sources, generator=g)
    nll, entropy = task.nll(sources, targets), task.entropy(sources, targets)
    assert 0.5 < entropy < math.log(SIZE["vocab_size"])  # a peaked, not degenerate, distribution
    assert abs(_z(task, sources, targets)) < 4.0, (nll, entropy)
    assert nll == pytest.approx(entropy, abs=0.05)
    # the same test rejects samples from another distribution (the oracle at temperature 0.8)
    cooler, _ = task.sample(sources, generator=g, temperature=0.8)
    assert _z(task, sources, cooler) < -6.0


def test_student_nll_and_evaluate(task):
    test = task.sample_dataset(128, seed=7)
    # the oracle as its own student: NLL_test is the NLL of fresh oracle samples
    assert student_nll(task.oracle, test) == pytest.approx(task.nll(test["input_ids"], test["labels"]), abs=1e-5)
    student = build_tiny_model("t5", task.tokenizer, seed=0)  # another family, same tokenizer
    rows = task.evaluate(student, test, temperatures=(1.0, 0.5))
    assert [r["setting"] for r in rows] == ["T=1", "T=0.5"]
    assert rows[0]["nll_test"] == pytest.approx(student_nll(student, test, suppress_token_ids=task.special_token_ids), abs=1e-5)
    assert rows[1]["nll_test"] == pytest.approx(student_nll(student, test, temperature=0.5, suppress_token_ids=task.special_token_ids), abs=1e-5)
    for row in rows:
        assert row["length"] == SIZE["target_length"] and math.isfinite(row["nll_oracle"]) and "nll_reference" not in row
    # an untrained student is far from the oracle: its samples score worse than the oracle's own
    assert rows[0]["nll_oracle"] > task.nll(test["input_ids"], test["labels"]) + 0.3


def test_clear_errors():
    with pytest.raises(ValueError, match="vocab_size"):
        oracle_tokenizer(1)
    with pytest.raises(ValueError, match="target_length"):
        OracleTask.build(target_length=0)
    with pytest.raises(ValueError, match="init_std"):
        OracleTask.build(init_std=0)
    task = OracleTask.build(seed=0, vocab_size=8, source_length=2, target_length=2)
    with pytest.raises(ValueError, match="positive integer"):
        task.sample_dataset(0)
    with pytest.raises(ValueError, match="2 sources for 3 targets"):
        task.nll([[5, 6, 2]] * 2, [[5, 6]] * 3)
