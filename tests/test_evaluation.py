"""Evaluation sweeps: the metrics against reference implementations on fixed inputs, the NLL
figures against independent computations, determinism, the table and the frontier plot."""

import math
from collections import Counter

import pytest
import torch
from datasets import Dataset

from hf_seqgan.evaluation import heldout_nll, mean_sweeps, plot_frontier, sweep_table, temperature_sweep, text_metrics
from hf_seqgan.oracle import OracleTask

PREDICTIONS = ["the cat sat on the mat", "a dog ran in the park today", "the cat sat", "the bank of peru signs the deal"]
REFERENCES = ["the cat sat on a mat", "a dog ran to the park", "the cat ran", "peru bank signs a trade deal"]


def test_text_metrics_against_reference_implementations():
    import sacrebleu
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_score import rouge_scorer

    out = text_metrics(PREDICTIONS, REFERENCES)
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score)
    assert text_metrics(REFERENCES, REFERENCES, metrics=("bleu",))["bleu"] == pytest.approx(100.0)
    # ROUGE by hand on one pair: "the cat sat" vs "the cat ran": unigrams 2/3, bigrams 1/2, LCS 2/3
    one = text_metrics(["the cat sat"], ["the cat ran"], metrics=("rouge",))
    assert (one["rouge1"], one["rouge2"], one["rougeL"]) == pytest.approx((2 / 3, 1 / 2, 2 / 3))
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert out["rougeL"] == pytest.approx(sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDICTIONS, REFERENCES)) / 4)
    # self-BLEU: NLTK sentence BLEU of each text against the others (method1 smoothing, as Texygen)
    tokens = [p.split() for p in PREDICTIONS]
    expected = sum(sentence_bleu(tokens[:i] + tokens[i + 1 :], t, smoothing_function=SmoothingFunction().method1) for i, t in enumerate(tokens)) / 4
    assert out["self_bleu"] == pytest.approx(expected)
    # distinct-n by hand: 22 words, 15 distinct; 18 bigrams, 15 distinct
    words = " ".join(PREDICTIONS).split()
    bigrams = [b for p in PREDICTIONS for b in zip(p.split(), p.split()[1:])]
    assert (out["distinct_1"], out["distinct_2"]) == pytest.approx((len(set(words)) / len(words), len(set(bigrams)) / len(bigrams)))
    with pytest.raises(ValueError, match="one reference per prediction"):
        text_metrics(PREDICTIONS, REFERENCES[:2])
    with pytest.raises(ValueError, match="Unknown metrics"):
        text_metrics(PREDICTIONS, REFERENCES, metrics=("meteor",))


@pytest.fixture
def text_data(corpus):
    pairs = corpus[:16]
    return Dataset.from_dict({"source": [p["article"] for p in pairs], "target": [p["headline"] for p in pairs]})


def test_sweep_at_temperature_one_reproduces_the_models_own_nll(make_model, tokenizer, text_data):
    model = make_model("bart", warm=False)
    # The distribution is built, not hoped for. The untrained model's logits stay below 1; its output bias adds
    # +3 to the eight most frequent ordinary tokens of the references (a third of the mass at T=1, nine tenths
    # at T=0.5: varied samples from a distribution far from uniform, so T=0.5 samples from another one) and -8
    # to EOS (p < 1e-6 a step: every sample runs the full 16 tokens). The references stay likely enough that
    # the held-out NLL keeps the size (about 6 nats) its float32 comparisons below are made at.
    counts = Counter(t for text in text_data["target"] for t in tokenizer(text, add_special_tokens=False).input_ids)
    favoured = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if t not in tokenizer.all_special_ids][:8]
    assert len(favoured) == 8
    model.final_logits_bias[0, favoured] = 3.0
    model.final_logits_bias[0, tokenizer.eos_token_id] = -8.0
    model.train()
    kwargs = dict(temperatures=(1.0, 0.5), reference_model=model, max_new_tokens=16, batch_size=10, metrics=("distinct",))
    rows = temperature_sweep(model, tokenizer, text_data, **kwargs)
    assert model.training  # the mode is restored
    t1, t05 = rows
    # its own samples scored teacher-forced = the log-probs the decode sampled them with
    assert t1["nll_reference"] == pytest.approx(t1["nll_self"], abs=1e-5)
    # T=0.5: sampled from another, sharper distribution: the samples are likelier under it than under the model's
    assert t05["nll_self"] != pytest.approx(t05["nll_reference"], abs=1e-4) and t05["nll_self"] < t05["nll_reference"] - 0.05
    # NLL_test at T=1 is the model's cross-entropy on the references, computed by the model itself
    enc = tokenizer(list(text_data["source"]), return_tensors="pt", padding=True)
    labels = tokenizer(text_target=list(text_data["target"]), return_tensors="pt", padding=True).input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    with torch.no_grad():
        model.eval()
        logits = model(**enc, labels=labels).logits
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="mean").item()
    assert t1["nll_test"] == pytest.approx(ce, abs=1e-5)
    assert heldout_nll(model, text_data, tokenizer, temperatures=(1.0, 0.5)) == pytest.approx([t1["nll_test"], t05["nll_test"]], abs=1e-6)
    assert t1["length"] == t05["length"] == 16 and t1["num_samples"] == 16 and 0 < t1["distinct_1"] <= 1
    # seeded: the same call gives the same rows, another seed other samples
    kwargs["temperatures"] = (1.0,)
    assert temperature_sweep(model, tokenizer, text_data, **kwargs) == [t1]
    assert temperature_sweep(model, tokenizer, text_data, seed=1, **kwargs)[0]["nll_self"] != t1["nll_self"]


@pytest.fixture(scope="module")
def task():
    return OracleTask.build(seed=1, vocab_size=30, source_length=4, target_length=6)


def test_oracle_sweep_top_p_and_samples_per_source(task):
    test = task.sample_dataset(40, seed=3)
    rows = temperature_sweep(task.oracle, task.tokenizer, test, temperatures=(1.0,), top_ps=(0.8,), reference_model=task.oracle,
                             num_samples=3, metrics=("bleu", "self_bleu"), **task.decode_kwargs)
    full, nucleus = rows
    assert full["num_samples"] == nucleus["num_samples"] == 120 and full["length"] == 6
    assert full["nll_reference"] == pytest.approx(full["nll_self"], abs=1e-5)
    assert nucleus["nll_test"] is None and nucleus["nll_reference"] < full["nll_reference"]  # truncation: likelier samples
    assert nucleus["nll_self"] < nucleus["nll_reference"]  # each token's nucleus probability p / Z >= p
    assert nucleus["self_bleu"] > full["self_bleu"]  # and less diverse ones
    assert full["nll_test"] == pytest.approx(task.nll(test["input_ids"], test["labels"]), abs=1e-5)


def test_mean_table_and_frontier_plot(task, tmp_path):
    test = task.sample_dataset(16, seed=4)
    sweeps = [temperature_sweep(task.oracle, task.tokenizer, test, temperatures=(1.0, 0.7), reference_model=task.oracle, seed=s,
                                metrics=(), **task.decode_kwargs) for s in (0, 1)]
    mean = mean_sweeps(sweeps)
    assert mean[0]["runs"] == 2 and mean[0]["nll_reference"] == pytest.approx((sweeps[0][0]["nll_reference"] + sweeps[1][0]["nll_reference"]) / 2)
    assert mean[0]["nll_reference_std"] > 0 and mean[0]["nll_test_std"] == 0  # the held-out NLL does not depend on the seed
    table = sweep_table({"oracle": mean, "seed 0": sweeps[0]}, columns=("nll_reference", "nll_test", "length"))
    lines = table.splitlines()
    assert lines[0] == "| model | setting | nll_reference | nll_test | length |" and len(lines) == 6
    assert "±" in lines[2] and lines[4].startswith("| seed 0 | T=1 |")
    path = plot_frontier({"oracle": mean, "seed 0": sweeps[0]}, tmp_path / "frontier.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no setting has both"):
        plot_frontier({"oracle": mean}, tmp_path / "x.png", x="bleu")
    with pytest.raises(ValueError, match="same settings"):
        mean_sweeps([sweeps[0], sweeps[1][:1]])


def test_clear_errors(task, make_model, tokenizer):
    test = task.sample_dataset(4, seed=0)
    with pytest.raises(ValueError, match="at least one temperature"):
        temperature_sweep(task.oracle, task.tokenizer, test, temperatures=())
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        temperature_sweep(task.oracle, task.tokenizer, test, temperatures=(0.0,))
    with pytest.raises(ValueError, match="text columns"):
        temperature_sweep(task.oracle, task.tokenizer, Dataset.from_dict({"article": ["a"], "summary": ["b"]}))
    with pytest.raises(ValueError, match="share the tokenizer"):
        temperature_sweep(task.oracle, task.tokenizer, test, reference_model=make_model("bart", warm=False))
    assert math.isfinite(heldout_nll(task.oracle, test)[0])
