"""Collapse checks and denoising pretraining.

- the collapse check flags a constant model (one output; the loss with shuffled sources equals the
  loss with true sources) and passes a model that copies its source;
- text infilling masks spans with one <mask> each and keeps special tokens; the collator's labels
  are the clean text (with the row's tag);
- a tiny pretraining run saves a checkpoint that the summarization recipe loads, resumes from its
  last checkpoint, and stops at its time budget.
"""

import copy
import json

import pytest
import torch

from hf_seqgan.collapse import check_collapse, collapse_report, derangement, distinct_stats, source_sensitivity, source_word_overlap
from hf_seqgan.pretraining import DenoisingCollator, choose_vocab_size, infill_spans, permute_sentences, pretrain
from hf_seqgan.tiny import build_tiny_model
from tests.conftest import ROOT

WORDS = "the cat dog sat ran on a mat bank of peru signed deal team kenya strike monday".split()


def _copy_pairs(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (5,), generator=g).tolist()) for _ in range(n)]


class _Copier(torch.nn.Module):
    """A seq2seq 'model' that copies its source: at decoder position t it puts all its mass on
    source token t (then on EOS); its greedy output is the source itself."""

    def __init__(self, tokenizer):
        super().__init__()
        self.vocab, self.eos = len(tokenizer), tokenizer.eos_token_id
        self.config = type("Config", (), {"eos_token_id": tokenizer.eos_token_id})()

    @property
    def device(self):
        return torch.device("cpu")

    def prepare_decoder_input_ids_from_labels(self, labels):
        return torch.cat([torch.full_like(labels[:, :1], self.eos), labels[:, :-1]], 1)

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        steps = decoder_input_ids.shape[1]
        source = torch.cat([input_ids.masked_fill(attention_mask == 0, self.eos), torch.full_like(input_ids[:, :1], self.eos).expand(-1, steps)], 1)
        logits = torch.full((*decoder_input_ids.shape, self.vocab), -10.0)  # (B, T, V)
        logits.scatter_(2, source[:, :steps, None], 10.0)
        return type("Out", (), {"logits": logits})()


class _Constant(torch.nn.Module):
    """A seq2seq 'model' whose logits ignore the encoder input: the same distribution for every row."""

    def __init__(self, base):
        super().__init__()
        self.base = base.eval()

    @property
    def device(self):
        return self.base.device

    def prepare_decoder_input_ids_from_labels(self, labels):
        return self.base.prepare_decoder_input_ids_from_labels(labels=labels)

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        blank = torch.full_like(input_ids[:, :2], self.base.config.eos_token_id)
        return self.base(input_ids=blank, attention_mask=torch.ones_like(blank), decoder_input_ids=decoder_input_ids)


def test_distinct_and_derangement():
    assert distinct_stats(["a", "a ", "b", "a"]) == {"distinct": 2, "distinct_fraction": 0.5, "top_output_share": 0.75}
    for n in (2, 3, 10, 101):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and all(perm[i] != i for i in range(n))


def test_collapse_check_flags_a_constant_model_and_passes_a_copier(tokenizer):
    texts = _copy_pairs()
    copier = _Copier(tokenizer)
    kwargs = dict(max_source_length=16, max_target_length=16, batch_size=16)
    # the copier: its own outputs are the sources; shuffling the sources makes the copies much less likely
    good = source_sensitivity(copier, tokenizer, texts, texts, **kwargs)
    assert good["source_gap"] > 1.0, good
    report = check_collapse(copier, tokenizer, texts, texts, texts, **kwargs)
    assert not report.collapsed and report.distinct_fraction > 0.9, report.lines()
    assert "OK" in "\n".join(report.lines())
    # the constant model: one output for everything, and the loss does not move with the sources
    constant = _Constant(build_tiny_model("bart", tokenizer, seed=0))
    bad = check_collapse(constant, tokenizer, texts, ["the cat sat"] * len(texts), texts, **kwargs)
    assert bad.collapsed and abs(bad.source_gap) < 1e-5
    text = "\n".join(bad.lines())
    assert "emits ONE output" in text and "IGNORES ITS INPUT" in text
    assert bad.metrics("eval_")["eval_collapsed"] == 1.0 and report.metrics("eval_")["eval_collapsed"] == 0.0
    # varied outputs but no source sensitivity is still flagged (the case sampling hides)
    varied = collapse_report(texts, loss_true=2.0, loss_shuffled=2.01)
    assert [w for w in varied.warnings if "IGNORES" in w] and not [w for w in varied.warnings if "ONE output" in w]


def test_source_word_overlap_tells_outputs_that_use_their_source_from_ones_that_do_not():
    sources = [f"the {a} chased a {b} in the park" for a, b in (("fox", "hen"), ("wolf", "lamb"), ("cat", "mouse"), ("dog", "ball"), ("owl", "frog"),
                                                                  ("bear", "bee"), ("hawk", "dove"), ("lion", "boar"))]
    reading = [f"once a {s.split()[1]} was hungry and the {s.split()[4]} ran" for s in sources]  # the source's characters carried over
    scores = source_word_overlap(sources, reading, seed=0)
    # `the`, `a`, `in`, `park`, `chased` are in every source: left out; each output keeps 7 words, 2 of them its characters
    assert scores["overlap_true"] == pytest.approx(2 / 7) and scores["overlap_shuffled"] == 0.0 and scores["overlap_gap"] == pytest.approx(2 / 7)
    constant = source_word_overlap(sources, ["once a fox was hungry"] * len(sources), seed=3)  # one output: the same share either way
    assert constant["overlap_gap"] == pytest.approx(0.0, abs=1e-12)
    assert source_word_overlap(sources[:2], ["", "..."]) == {}  # no output with a word: nothing to measure
    with pytest.raises(ValueError, match="one output per source"):
        source_word_overlap(sources, reading[:-1])


def test_a_low_loss_gap_is_not_called_ignoring_the_input_when_the_outputs_use_it():
    outputs = [f"story {i}" for i in range(20)]
    reads = collapse_report(outputs, loss_true=4.0, loss_shuffled=4.01, overlap_true=0.3, overlap_shuffled=0.1)
    assert not reads.collapsed and any(n.startswith("NOTE") and "read it" in n for n in reads.notices), reads.lines()
    assert reads.metrics("eval_")["eval_source_overlap_gap"] == pytest.approx(0.2)
    assert any("source words in the outputs: 30.0%" in line for line in reads.lines())
    ignores = collapse_report(outputs, loss_true=4.0, loss_shuffled=4.01, overlap_true=0.12, overlap_shuffled=0.1)
    warning = next(w for w in ignores.warnings if "IGNORES ITS INPUT" in w)
    assert ignores.collapsed and "12.0% of their words from their own source" in warning
    with pytest.raises(ValueError, match="both overlap_true and overlap_shuffled"):
        collapse_report(outputs, overlap_true=0.3)


def test_doubled_words_are_measured_against_the_sources_and_warned_about_without_a_collapse():
    from hf_seqgan.collapse import doubled_word_share

    assert doubled_word_share(["not not good", "fine ."]) == 0.5
    assert doubled_word_share(["Great great !", "ok . .", "#.# #.# points", "the the"]) == 0.5  # case-insensitive; a word holds a letter
    assert doubled_word_share([]) == 0.0
    sources = [f"the food was bad number {i} ." for i in range(20)]
    gamed = [f"great great food number {i} ." if i % 2 else f"the food was good number {i} ." for i in range(20)]
    report = collapse_report(gamed, loss_true=2.0, loss_shuffled=3.0, sources=sources)
    assert report.doubled_word_share == 0.5 and report.source_doubled_word_share == 0.0
    assert not report.collapsed and len(report.notices) == 1 and "DOUBLES WORDS" in report.notices[0] and "great great" in report.notices[0]
    assert "doubled words (a word twice in a row): 50.0% of outputs (sources: 0.0%)" in "\n".join(report.lines())
    assert report.metrics("eval_")["eval_doubled_word_share"] == 0.5
    # no notice when the sources double words as often (the outputs copy them)
    assert not collapse_report(gamed, sources=gamed).notices
    assert not collapse_report([s.replace("bad", "good") for s in sources], sources=sources).notices


def test_infilling_and_collator(tokenizer):
    ids = tokenizer(_copy_pairs(32), return_tensors="pt", padding=True)
    out, mask = infill_spans(ids["input_ids"], ids["attention_mask"], mask_token_id=tokenizer.mask_token_id,
                             special_token_ids=tokenizer.all_special_ids, ratio=0.4, generator=torch.Generator().manual_seed(0))
    masked = (out == tokenizer.mask_token_id) & mask.bool()
    assert masked.any(1).float().mean() > 0.5  # most rows got a span
    assert not (masked[:, 1:] & masked[:, :-1]).any()  # each span is ONE <mask>
    eos = tokenizer.eos_token_id
    assert ((out == eos).sum(1) == (ids["input_ids"] == eos).sum(1)).all()  # special tokens kept
    assert (mask.sum(1) <= ids["attention_mask"].sum(1)).all()
    before = ids["input_ids"].clone()
    infill_spans(ids["input_ids"], ids["attention_mask"], mask_token_id=4, special_token_ids=[0, 2])
    assert torch.equal(before, ids["input_ids"])  # inputs untouched
    g = torch.Generator().manual_seed(0)
    assert sorted(permute_sentences("a b. c d! e?", g).split()) == sorted("a b. c d! e?".split())
    tokenizer = copy.deepcopy(tokenizer)  # the session's tokenizer stays as every other test builds its models on it
    tokenizer.add_special_tokens({"additional_special_tokens": ["<tagA>"]}, replace_extra_special_tokens=False)
    batch = DenoisingCollator(tokenizer, max_length=16)([{"text": "the cat sat on a mat", "tag": "<tagA>"}, {"text": "a dog ran", "tag": ""}])
    tag = tokenizer.convert_tokens_to_ids("<tagA>")
    assert batch["labels"][0, 0] == tag and batch["input_ids"][0, 0] == tag and batch["labels"][1, 0] != tag
    clean = tokenizer(["a dog ran"])["input_ids"][0]
    assert batch["labels"][1, : len(clean)].tolist() == clean  # the clean text is the target
    assert choose_vocab_size(["x y"] * 5) == 1000


def test_pretraining_saves_a_checkpoint_the_recipes_load_resumes_and_stops_on_time(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    corpora = [(None, _copy_pairs(120, seed=1)), ("en_XX", _copy_pairs(120, seed=2))]
    small = dict(vocab_size=300, d_model=32, layers=1, heads=2, max_length=16, batch_size=8, warmup_steps=2, logging_steps=2, save_steps=3,
                 validation_lines=8)
    out = tmp_path / "pt"
    first = pretrain(corpora, str(out), max_steps=3, **small)
    assert first["steps"] == 3 and first["vocab_size"] >= 300 and (out / "checkpoint-3").is_dir() and "eval_loss" in first
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    assert model.config.d_model == 32
    # resume: continues from checkpoint-3 to step 6 with the saved tokenizer
    resumed = pretrain(corpora, str(out), max_steps=6, resume=True, **small)
    assert resumed["steps"] == 6
    state = json.loads((out / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h][:1] == [2]  # the history of the first run is kept
    # time budget: stops long before max_steps
    timed = pretrain(corpora, str(tmp_path / "timed"), max_steps=100000, time_budget=0.02, **small)
    assert timed["stopped_by_time_budget"] and timed["steps"] < 1000
    # a recipe loads it (summarization, supervised, a few steps on synthetic pairs)
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_summarization", ROOT / "examples" / "run_summarization.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    metrics = script.main(["--model_name_or_path", str(out), "--max_steps", "2", "--per_device_train_batch_size", "8", "--synthetic_train_size", "32",
                           "--synthetic_eval_size", "8", "--max_source_length", "16", "--max_target_length", "8", "--disable_tqdm", "true",
                           "--plot_curves", "false", "--output_dir", str(tmp_path / "sum")])
    assert "eval_rouge1" in metrics and "eval_source_gap" in metrics


def test_run_pretraining_script(tmp_path, shared_data):
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_pretraining", ROOT / "examples" / "run_pretraining.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    metrics = script.main(["--train_files", str(shared_data / "gigaword" / "train.headline.unpaired.txt"), f"de_DE={shared_data / 'multi30k' / 'train.de'}",
                           "--max_lines_per_file", "200", "--d_model", "32", "--layers", "1", "--heads", "2", "--max_steps", "2", "--batch_size", "4",
                           "--max_length", "24", "--output_dir", str(tmp_path / "pt")])
    assert metrics["steps"] == 2 and (tmp_path / "pt" / "pretraining.json").is_file()
    from transformers import AutoTokenizer

    assert "de_DE" in AutoTokenizer.from_pretrained(tmp_path / "pt").get_vocab()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        script.main(["--train_files", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "x")])
