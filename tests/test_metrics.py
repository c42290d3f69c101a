"""The packaged evaluate metrics: offline loading by path, results equal to the reference implementations
(rouge_score, sacrebleu, NLTK sentence BLEU) and hand-computed diversity figures."""

import math
import random
import socket

import numpy as np
import pytest
import sacrebleu
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_score import rouge_scorer, scoring

from hf_seqgan.metrics import available_metrics, load_metric
from hf_seqgan.metrics.functional import distinct_n, self_bleu, self_bleu_scores, tokenize

PREDICTIONS = [
    "The cats were sitting on the mats near the door.",
    "police arrested two men after the robbery on monday",
    "the bank of peru raised its rates again",
    "the quick brown fox jumps over a lazy dog",
]
REFERENCES = [
    "The cat sat on the mat by the door.",
    "two men were arrested by police after monday's robbery",
    "peru's central bank raised interest rates",
    "the quick brown fox jumped over a lazy dog",
]
MULTI_REFERENCES = [[ref, alt] for ref, alt in zip(REFERENCES, ["cats sat on mats", "police held two men", "the bank raised rates", "a fox jumps"])]


@pytest.fixture(scope="module")
def metrics():
    return {name: load_metric(name, seed=0) for name in available_metrics()}


def test_available_metrics_and_unknown_name():
    assert available_metrics() == ["distinct_n", "rouge", "sacrebleu", "self_bleu"]
    with pytest.raises(ValueError, match=r"Unknown metric 'bleu'.*\['distinct_n', 'rouge', 'sacrebleu', 'self_bleu'\].*never reaches the hub"):
        load_metric("bleu")


@pytest.mark.parametrize("evaluate_offline", [True, False])
def test_loading_opens_no_connection(monkeypatch, evaluate_offline):
    """Loaded by path: no socket is even tried, with or without evaluate's offline switch."""
    import evaluate

    assert __import__("os").environ["HF_EVALUATE_OFFLINE"] == "1"
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", evaluate_offline)
    attempts = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address) or real_connect(self, address))
    for name in available_metrics():
        module = load_metric(name)
        assert isinstance(module, evaluate.EvaluationModule) and module.name == name
    assert attempts == []


def _reference_rouge(predictions, references, rouge_types, use_stemmer, use_aggregator, tokenizer=None):
    class Tok:
        def tokenize(self, text):
            return tokenizer(text)

    scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=use_stemmer, tokenizer=Tok() if tokenizer else None)
    multi = isinstance(references[0], list)
    scores = [scorer.score_multi(r, p) if multi else scorer.score(r, p) for r, p in zip(references, predictions)]
    if not use_aggregator:
        return {key: [s[key].fmeasure for s in scores] for key in rouge_types}
    np.random.seed(0)  # the bootstrap draws from numpy's global generator; the module runs under seed=0
    agg = scoring.BootstrapAggregator()
    for s in scores:
        agg.add_scores(s)
    return {key: value.mid.fmeasure for key, value in agg.aggregate().items()}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"use_stemmer": True},
        {"rouge_types": ["rouge1", "rougeL"], "use_aggregator": False},
        {"rouge_types": ["rouge2", "rougeLsum"], "use_stemmer": True, "use_aggregator": False},
        {"rouge_types": ["rouge1", "rouge3"], "tokenizer": str.split},
        {"multi": True, "use_stemmer": True},
    ],
)
def test_rouge_equals_rouge_score(metrics, options):
    options = dict(options)
    references = MULTI_REFERENCES if options.pop("multi", False) else REFERENCES
    ours = metrics["rouge"].compute(predictions=PREDICTIONS, references=references, **options)
    expected = _reference_rouge(
        PREDICTIONS, references, options.get("rouge_types", ["rouge1", "rouge2", "rougeL", "rougeLsum"]),
        options.get("use_stemmer", False), options.get("use_aggregator", True), options.get("tokenizer"),
    )
    assert ours == expected
    first = ours[next(iter(ours))]
    assert 0.0 < float(np.mean(first)) < 1.0  # a non-degenerate case


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"smooth_method": "none"},
        {"smooth_method": "floor", "smooth_value": 0.2},
        {"smooth_method": "add-k", "smooth_value": 1},
        {"tokenize": "char"},
        {"tokenize": "intl", "lowercase": True},
        {"tokenize": "none", "use_effective_order": True},
    ],
)
@pytest.mark.parametrize("multi", [False, True])
def test_sacrebleu_equals_corpus_bleu(metrics, options, multi):
    references = MULTI_REFERENCES if multi else REFERENCES
    ours = metrics["sacrebleu"].compute(predictions=PREDICTIONS, references=references, **options)
    streams = [[refs[i] for refs in references] for i in range(2)] if multi else [REFERENCES]
    ref = sacrebleu.corpus_bleu(PREDICTIONS, streams, **options)
    assert ours == {
        "score": ref.score, "counts": ref.counts, "totals": ref.totals, "precisions": ref.precisions, "bp": ref.bp,
        "sys_len": ref.sys_len, "ref_len": ref.ref_len,
    }
    assert 0.0 < ours["score"] < 100.0


def test_sacrebleu_uneven_references_error(metrics):
    with pytest.raises(ValueError, match="same number of references"):
        metrics["sacrebleu"].compute(predictions=PREDICTIONS[:2], references=[["a", "b"], ["c"]])


def test_distinct_n_hand_computed(metrics):
    # unigrams: the cat sat the cat ran -> 4 unique / 6; bigrams: the-cat cat-sat the-cat cat-ran -> 3 / 4
    assert distinct_n(["the cat sat", "the cat ran"]) == {"distinct_1": 4 / 6, "distinct_2": 3 / 4}
    assert distinct_n(["a b a b a"], n=3) == {"distinct_3": 2 / 3}  # a-b-a, b-a-b, a-b-a
    assert distinct_n(["hi, hi!"], n=1) == {"distinct_1": 3 / 4}  # hi , hi !  -> 3 distinct of 4
    assert distinct_n(["hi, hi!"], n=1, tokenizer="whitespace") == {"distinct_1": 1.0}
    assert distinct_n(["hi, hi!"], n=1, tokenizer=lambda s: s.lower().replace(",", "").replace("!", "").split()) == {"distinct_1": 0.5}
    assert distinct_n(["one"], n=(1, 2)) == {"distinct_1": 1.0, "distinct_2": 0.0}  # no bigram at all
    assert metrics["distinct_n"].compute(predictions=["the cat sat", "the cat ran"], n=[1, 2, 3]) == {"distinct_1": 4 / 6, "distinct_2": 3 / 4, "distinct_3": 1.0}
    with pytest.raises(TypeError, match="single string"):
        distinct_n("the cat sat")
    with pytest.raises(ValueError, match="positive int"):
        distinct_n(["a"], n=0)
    with pytest.raises(ValueError, match="Unknown tokenizer 'spacy'"):
        distinct_n(["a"], tokenizer="spacy")


def test_self_bleu_hand_computed(metrics):
    texts = ["the cat sat on the mat", "the cat sat on the hat", "a dog ran far away"]
    # text 0 vs {1, 2}: unigrams 5/6 (mat unmatched), bigrams 4/5 (the-mat unmatched), BP 1 -> sqrt(2/3);
    # text 1 likewise; text 2 shares no word with the others -> 0
    assert self_bleu_scores(texts, max_order=2) == pytest.approx([math.sqrt(2 / 3), math.sqrt(2 / 3), 0.0], abs=1e-15)
    assert self_bleu(texts, max_order=2) == pytest.approx(2 / 3 * math.sqrt(2 / 3), abs=1e-15)
    assert metrics["self_bleu"].compute(predictions=texts, max_order=2) == {"self_bleu": pytest.approx(2 / 3 * math.sqrt(2 / 3), abs=1e-15)}
    assert self_bleu(["all the same words here"] * 3) == pytest.approx(1.0)
    assert self_bleu(["too short"] * 3) == pytest.approx(0.1 ** 0.5)  # no 3-/4-gram: NLTK method1 puts 0.1/1 there
    # brevity penalty against the closest *other* length: "a b" (2) vs "a b c d" (4) -> exp(1 - 4/2), unigram 1, bigram 1
    assert self_bleu_scores(["a b", "a b c d"], max_order=2)[0] == pytest.approx(math.exp(-1))


@pytest.mark.filterwarnings(r"ignore:(?s).*The hypothesis contains 0 counts:UserWarning")  # NLTK's method0 on purpose
@pytest.mark.parametrize("max_order,smoothing", [(1, "epsilon"), (2, "epsilon"), (4, "epsilon"), (5, "epsilon"), (3, "none")])
def test_self_bleu_equals_nltk_sentence_bleu(max_order, smoothing):
    rng = random.Random(max_order)
    vocab = "a b c d e f g the of , .".split()
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) for _ in range(40)]
    tokens = tokenize(texts)
    smooth = SmoothingFunction().method1 if smoothing == "epsilon" else SmoothingFunction().method0
    weights = (1 / max_order,) * max_order
    expected = [sentence_bleu(tokens[:i] + tokens[i + 1:], tokens[i], weights, smoothing_function=smooth) for i in range(len(tokens))]
    ours = self_bleu_scores(texts, max_order=max_order, smoothing=smoothing)
    assert ours == pytest.approx(expected, abs=1e-12)
    assert len(set(round(s, 6) for s in ours)) > 5  # the case is not degenerate


def test_self_bleu_sample_and_errors():
    rng = random.Random(0)
    texts = [" ".join(rng.choice("abcdefgh") for _ in range(8)) for _ in range(600)]
    sampled = self_bleu(texts, sample_size=50, seed=1)
    picked = sorted(random.Random(1).sample(range(600), 50))
    assert sampled == pytest.approx(self_bleu([texts[i] for i in picked]))
    assert self_bleu(texts, sample_size=50, seed=2) != sampled
    assert 0.0 < self_bleu(texts) < 1.0
    with pytest.raises(ValueError, match="at least 2 texts"):
        self_bleu(["only one"])
    with pytest.raises(ValueError, match="smoothing must be"):
        self_bleu(["a", "b"], smoothing="add-k")
    with pytest.raises(ValueError, match="weights must have max_order=4"):
        self_bleu(["a", "b"], weights=[0.5, 0.5])
    with pytest.raises(TypeError, match="Text 1 is a list"):
        self_bleu(["a", [1, 2]])
