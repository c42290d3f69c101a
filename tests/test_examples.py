"""The example recipes run end to end for a few steps, offline, on their embedded defaults and on the
real corpora in ../shared/data: they train, evaluate (finite metrics) and write a model that reloads.

The scripts run in this process through their ``main(argv)`` (a subprocess would pay the imports
again each time); tiny models, two or three steps and a few dozen rows keep each run to seconds.
"""

import importlib.util
import json
import math

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_seqgan.recipes import SUPERVISED_TRAINERS, SYNTHETIC_NOTE, Corpus, read_table
from tests.conftest import ROOT

# few steps, tiny sizes: what every run shares
QUICK = ["--max_steps", "2", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "1",
         "--disable_tqdm", "true", "--tiny_d_model", "32", "--tiny_vocab_size", "300", "--num_printed_samples", "1", "--plot_curves", "false",
         "--max_source_length", "24", "--max_target_length", "12"]
SYNTHETIC = ["--synthetic_train_size", "64", "--synthetic_eval_size", "8"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scripts():
    return {name: _script(name) for name in ("run_summarization", "run_translation", "run_style_transfer", "run_story_generation")}


COLLAPSE_KEYS = {"distinct_fraction", "top_output_share", "loss_true_sources", "loss_shuffled_sources", "source_gap", "collapsed", "doubled_word_share",
                 "source_doubled_word_share"}


def _assert_collapse_report(metrics, stdout, prefix="eval_"):
    """The collapse check is in the metrics and, when captured, printed next to the metric and the baseline."""
    assert {prefix + k for k in COLLAPSE_KEYS} <= set(metrics), sorted(metrics)
    assert 0 < metrics[prefix + "distinct_fraction"] <= 1 and metrics[prefix + "collapsed"] in (0.0, 1.0)
    assert metrics[prefix + "source_gap"] == pytest.approx(metrics[prefix + "loss_shuffled_sources"] - metrics[prefix + "loss_true_sources"])
    if prefix + "source_overlap_gap" in metrics:  # absent only when fewer than two outputs hold a word
        assert metrics[prefix + "source_overlap_gap"] == pytest.approx(metrics[prefix + "source_word_overlap"] - metrics[prefix + "shuffled_source_word_overlap"])
        assert not stdout or "source words in the outputs" in stdout
    if stdout:
        assert "Collapse check" in stdout and "sources shuffled across rows" in stdout and "distinct %" in stdout and "loss shuffled" in stdout
        assert "doubled words (a word twice in a row)" in stdout and "doubled %" in stdout
        if metrics[prefix + "collapsed"]:
            assert "WARNING: the model" in stdout.split("metric")[-1]  # said again after the metrics


def _run(scripts, name, args, out_dir, capsys=None):
    argv = args if args[0].endswith(".json") else [*QUICK, *args, "--output_dir", str(out_dir)]  # args override QUICK
    metrics = scripts[name].main(argv)
    stdout = capsys.readouterr().out if capsys is not None else ""
    assert metrics == json.loads((out_dir / "results.json").read_text())
    assert metrics["train_loss"] > 0 and all(math.isfinite(v) for v in metrics.values()), metrics
    assert (out_dir / "trainer_state.json").is_file()
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(out_dir)
    with torch.no_grad():
        out = model.generate(**tok(["the bank of peru signed a deal ."], return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1
    return metrics, stdout


def _lines(path, start=0, stop=None):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f][start:stop]


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------- summarization
def test_summarization_embedded_default(scripts, tmp_path, capsys):
    metrics, stdout = _run(scripts, "run_summarization", [*SYNTHETIC, "--plot_curves", "true"], tmp_path / "out", capsys)
    assert (tmp_path / "out" / "training_curves.png").is_file() and "Curves:" in stdout
    assert SYNTHETIC_NOTE in stdout and "Sample outputs:" in stdout and "lead8 (ROUGE F1)" in stdout
    assert {"eval_loss", "eval_rouge1", "eval_rouge2", "eval_rougeL", "lead8_rouge1", "lead8_rougeL"} <= set(metrics)
    assert metrics["lead8_rouge1"] > 50  # the synthetic headline is recoverable from the lead: a sanity check of the metric wiring
    _assert_collapse_report(metrics, stdout)


@pytest.mark.parametrize("trainer", [t for t in SUPERVISED_TRAINERS if t != "mle"])
def test_summarization_each_trainer(scripts, tmp_path, trainer):
    extra = {"scheduled_sampling": ["--gold_probability", "0.5"],
             "professor_forcing": [],
             "adversarial": ["--max_new_tokens", "8", "--discriminator_hidden_size", "32"]}[trainer]
    args = ["--trainer", trainer, *extra, *SYNTHETIC, "--max_target_length", "12"]
    if trainer == "professor_forcing":  # all arguments from a JSON file (HfArgumentParser's other input)
        values = {"trainer": trainer, "output_dir": str(tmp_path / "out"), "max_steps": 2, "per_device_train_batch_size": 8,
                  "per_device_eval_batch_size": 16, "logging_steps": 1, "disable_tqdm": True, "tiny_d_model": 32, "tiny_vocab_size": 300,
                  "num_printed_samples": 1, "synthetic_train_size": 64, "synthetic_eval_size": 8, "max_target_length": 12}
        (tmp_path / "args.json").write_text(json.dumps(values))
        args = [str(tmp_path / "args.json")]
    metrics, _ = _run(scripts, "run_summarization", args, tmp_path / "out")
    assert "eval_rouge1" in metrics and "eval_loss" in metrics
    if trainer == "adversarial":
        assert (tmp_path / "out" / "discriminator" / "config.json").is_file()


def test_summarization_trainer_options_come_from_the_trainer(scripts, tmp_path):
    with pytest.raises(ValueError, match="not used by the HfArgumentParser.*gold_probability"):  # no MLE option
        scripts["run_summarization"].main(["--gold_probability", "0.5", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="not one of"):
        scripts["run_summarization"].main(["--trainer", "gan", "--output_dir", str(tmp_path)])


def test_summarization_rejects_bad_columns(scripts, tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "a b", "summary": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"Column 'article' not in train data.*--text_column"):
        scripts["run_summarization"].main(["--train_file", str(tmp_path / "t.jsonl"), "--output_dir", str(tmp_path / "o")])


def test_summarization_on_gigaword(scripts, tmp_path, shared_data):
    """Supervised on line-aligned text files (the paired valid split, 5% held out), continuing from
    a saved model folder; then unsupervised (cycle) from the unpaired article and headline files."""
    giga = shared_data / "gigaword"
    first, _ = _run(scripts, "run_summarization", ["--train_file", str(giga / "valid.article.txt"), "--train_target_file", str(giga / "valid.headline.txt"),
                                                   "--max_train_samples", "64", "--max_eval_samples", "8", "--tiny_family", "t5",
                                                   "--max_source_length", "48", "--max_target_length", "16"], tmp_path / "sup")
    assert "eval_rouge1" in first
    _assert_collapse_report(first, "")
    metrics, _ = _run(scripts, "run_summarization", [
        "--unsupervised", "--model_name_or_path", str(tmp_path / "sup"),
        "--train_file", str(giga / "train.article.unpaired.txt"), "--train_target_file", str(giga / "train.headline.unpaired.txt"),
        "--validation_file", str(giga / "valid.article.txt"), "--validation_target_file", str(giga / "valid.headline.txt"),
        "--max_train_samples", "32", "--max_eval_samples", "8", "--max_source_length", "48", "--max_target_length", "16",
    ], tmp_path / "cycle")
    assert {"eval_rouge1", "lead8_rouge1"} <= set(metrics) and "eval_loss" not in metrics
    _assert_collapse_report(metrics, "")  # the cycle model's direction tags applied
    assert (tmp_path / "cycle" / "reconstructor" / "config.json").is_file()


# ---------------------------------------------------------------------- translation
def test_translation_embedded_default(scripts, tmp_path, capsys):
    metrics, stdout = _run(scripts, "run_translation", SYNTHETIC, tmp_path / "out", capsys)
    assert SYNTHETIC_NOTE in stdout and "copy source" in stdout
    assert {"eval_bleu", "copy_source_bleu"} <= set(metrics)
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out").config.model_type == "mbart"
    _assert_collapse_report(metrics, stdout)  # with the direction tags of the shared model


def test_translation_on_multi30k(scripts, tmp_path, shared_data):
    """English from the first half of train, German from the second half (no pair seen), two
    models and a discriminator on the German side."""
    d = shared_data / "multi30k"
    en, de = _lines(d / "train.en", 0, 48), _lines(d / "train.de", 14500, 14548)
    metrics, _ = _run(scripts, "run_translation", [
        "--train_file", _write_lines(tmp_path / "en.txt", en), "--train_target_file", _write_lines(tmp_path / "de.txt", de),
        "--validation_file", str(d / "valid.en"), "--validation_target_file", str(d / "valid.de"), "--max_eval_samples", "8",
        "--shared_model", "false", "--adversarial_weight", "0.5", "--max_new_tokens", "12", "--domain_vocabulary_ratio", "0.1",
    ], tmp_path / "out")
    assert metrics["copy_source_bleu"] > 0 and "eval_bleu" in metrics
    _assert_collapse_report(metrics, "")
    assert (tmp_path / "out" / "reconstructor" / "config.json").is_file() and (tmp_path / "out" / "discriminator").is_dir()
    vocabulary = json.loads((tmp_path / "out" / "domain_vocabulary.json").read_text())
    assert vocabulary["suppress_tokens_y"] and vocabulary["suppress_tokens_x"]  # each direction keeps to its language's tokens


def test_supervised_translation_predicts_a_held_out_file(scripts, tmp_path, shared_data, capsys):
    """--supervised on line-aligned Multi30k pairs; --do_predict on a file that is not the corpus's validation
    split writes its predictions and metrics (with the collapse check)."""
    d = shared_data / "multi30k"
    test_en = _write_lines(tmp_path / "test.en", _lines(d / "valid.en", 500, 510))
    test_de = _write_lines(tmp_path / "test.de", _lines(d / "valid.de", 500, 510))
    metrics, stdout = _run(scripts, "run_translation", [
        "--supervised", "--train_file", str(d / "train.en"), "--train_target_file", str(d / "train.de"), "--max_train_samples", "48",
        "--validation_file", str(d / "valid.en"), "--validation_target_file", str(d / "valid.de"), "--max_eval_samples", "8",
        "--do_predict", "--test_file", test_en, "--test_target_file", test_de,
    ], tmp_path / "out", capsys)
    assert {"eval_bleu", "test_bleu", "test_copy_source_bleu", "eval_loss"} <= set(metrics)
    _assert_collapse_report(metrics, stdout)
    _assert_collapse_report(metrics, "", "test_")
    predictions = _lines(tmp_path / "out" / "test_predictions.txt")
    assert len(predictions) == 10
    assert json.loads((tmp_path / "out" / "test_results.json").read_text())["test_bleu"] == metrics["test_bleu"]
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out").config.model_type == "bart"


def test_supervised_translation_with_scheduled_sampling(scripts, tmp_path, shared_data):
    """--supervised --trainer scheduled_sampling trains with ScheduledSamplingTrainer (its options parsed, its
    replaced fraction logged); --trainer without --supervised is refused with the fix."""
    d = shared_data / "multi30k"
    data = ["--train_file", str(d / "train.en"), "--train_target_file", str(d / "train.de"), "--max_train_samples", "48",
            "--validation_file", str(d / "valid.en"), "--validation_target_file", str(d / "valid.de"), "--max_eval_samples", "8"]
    _run(scripts, "run_translation", ["--supervised", "--trainer", "scheduled_sampling", "--gold_probability", "0", *data], tmp_path / "out")
    logs = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    replaced = [h["replaced_fraction"] for h in logs if "replaced_fraction" in h]
    assert replaced and all(r == pytest.approx(1.0) for r in replaced), logs  # gold probability 0: a prediction fed at every position
    with pytest.raises(ValueError, match="add --supervised"):
        scripts["run_translation"].main([*QUICK, "--trainer", "scheduled_sampling", "--output_dir", str(tmp_path / "x")])


def test_summarization_predicts_a_test_file_without_training(scripts, tmp_path):
    """--skip_training with a saved model: only evaluation and --do_predict (references from a jsonl column)."""
    first, _ = _run(scripts, "run_summarization", SYNTHETIC, tmp_path / "first")
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps({"article": f"the bank of peru signed a deal on day {i} .", "headline": "peru bank deal"}) for i in range(6)))
    metrics = scripts["run_summarization"].main([*QUICK, *SYNTHETIC, "--model_name_or_path", str(tmp_path / "first"), "--skip_training", "true",
                                                 "--do_predict", "--test_file", str(test), "--output_dir", str(tmp_path / "second")])
    assert "train_loss" not in metrics and {"test_rouge1", "lead8_rouge1", "test_distinct_fraction", "test_source_gap"} <= set(metrics)
    assert len(_lines(tmp_path / "second" / "test_predictions.txt")) == 6
    with pytest.raises(ValueError, match="without --test_file"):
        scripts["run_summarization"].main(["--test_target_file", str(test), "--output_dir", str(tmp_path / "x")])


def test_no_repeat_ngram_size_decodes_as_generate_does(make_model, tokenizer, corpus, scripts, tmp_path):
    """--no_repeat_ngram_size: the recipes' greedy decode equals `generate(no_repeat_ngram_size=n)`
    token for token, and a negative size is refused when the options are parsed."""
    from hf_seqgan.recipes import generate_texts

    model = make_model("bart", warm=False)
    word = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" the"))[0]
    model.final_logits_bias[0, word] = 50.0  # greedy emits this token at every step unless the processor stops it
    sources = [p["article"] for p in corpus[:6]]
    assert all(text.split().count("the") >= 10 for text in generate_texts(model, tokenizer, sources, max_source_length=24, max_new_tokens=12))
    ours = generate_texts(model, tokenizer, sources, max_source_length=24, max_new_tokens=12, no_repeat_ngram_size=2)
    batch = tokenizer(sources, return_tensors="pt", padding=True, truncation=True, max_length=24)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=12, do_sample=False, no_repeat_ngram_size=2)
    assert ours == [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    for text in ours:
        bigrams = list(zip(text.split(), text.split()[1:]))
        assert text.split().count("the") < 10 and len(set(bigrams)) == len(bigrams), text
    with pytest.raises(ValueError, match="no_repeat_ngram_size must be >= 0"):
        scripts["run_summarization"].main([*QUICK, "--no_repeat_ngram_size", "-1", "--output_dir", str(tmp_path)])


def test_no_doubled_tokens_decodes_as_generate_with_the_processor(make_model, tokenizer, corpus):
    """--no_doubled_tokens (DataArguments.repetition_blocking): the recipes' greedy decode equals
    `generate` with NoDoubledTokenLogitsProcessor, and no output has a word twice in a row."""
    from transformers import LogitsProcessorList

    from hf_seqgan.logits_process import NoDoubledTokenLogitsProcessor
    from hf_seqgan.recipes import DataArguments, generate_texts

    model = make_model("bart", warm=False)
    word = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" the"))[0]
    model.final_logits_bias[0, word] = 50.0
    sources = [p["article"] for p in corpus[:6]]
    blocking = DataArguments(no_doubled_tokens=True).repetition_blocking()
    assert blocking == {"no_repeat_ngram_size": 0, "no_doubled_tokens": True}
    ours = generate_texts(model, tokenizer, sources, max_source_length=24, max_new_tokens=12, **blocking)
    batch = tokenizer(sources, return_tensors="pt", padding=True, truncation=True, max_length=24)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=12, do_sample=False, logits_processor=LogitsProcessorList([NoDoubledTokenLogitsProcessor()]))
    assert ours == [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    body = ids[:, 1:]  # the decoder start left out
    assert not bool(((body[:, 1:] == body[:, :-1]) & (body[:, 1:] != tokenizer.pad_token_id)).any())  # no token twice in a row
    assert int((body == word).sum(-1).min()) >= 3  # while the pushed word comes back


def test_preset_sets_sizes_and_schedule_and_the_command_line_wins(tokenizer, corpus):
    from hf_seqgan import recipes
    from tests.conftest import ROOT as _  # noqa: F401

    argv = ["--preset", "cpu", "--learning_rate", "5e-4", "--output_dir", "/tmp/unused"]
    model_args, data_args, training_args = recipes.parse_recipe_args(recipes.SupervisedDataArguments, argv, recipes.training_defaults("t"),
                                                                     method="mle", logger_name="t")
    assert (model_args.tiny_d_model, model_args.tiny_layers, model_args.tiny_dropout, model_args.time_budget) == (256, 3, 0.1, 25.0)
    assert model_args.tiny_attention_dropout == 0.0 and model_args.tiny_scale_embedding is False  # BART's own choices, as the baseline
    assert training_args.lr_scheduler_type == "inverse_sqrt" and training_args.warmup_steps == 300 and training_args.learning_rate == 5e-4
    assert training_args.label_smoothing_factor == 0.1 and training_args.per_device_train_batch_size == 64
    assert training_args.train_sampling_strategy == "group_by_length"
    articles, headlines = [p["article"] for p in corpus], [p["headline"] for p in corpus]
    recipes.fit_lengths(model_args, data_args, tokenizer, articles, headlines)
    source_lengths = sorted(len(ids) for ids in tokenizer(articles)["input_ids"])
    assert data_args.max_source_length == source_lengths[int(0.99 * len(source_lengths))] + 1
    model_args.explicit.add("max_target_length")
    data_args.max_target_length = 7
    recipes.fit_lengths(model_args, data_args, tokenizer, articles, headlines)
    assert data_args.max_target_length == 7  # given on the command line: kept
    plain = recipes.parse_recipe_args(recipes.SupervisedDataArguments, ["--output_dir", "/tmp/unused"], recipes.training_defaults("t"), method="mle", logger_name="t")
    assert plain[0].tiny_d_model == 64 and plain[2].learning_rate == 3e-3  # the toy default is unchanged
    with pytest.raises(ValueError, match="--preset 'tpu'"):
        recipes.parse_recipe_args(recipes.SupervisedDataArguments, ["--preset", "tpu"], {}, method="mle", logger_name="t")


def test_tiny_model_options_reach_the_config():
    """--tiny_attention_dropout (unset: --tiny_dropout) and --tiny_scale_embedding reach the built model's config."""
    from hf_seqgan import recipes

    texts = [f"a man rides a horse number {i} ." for i in range(50)]
    default, _, _ = recipes.load_model_and_tokenizer(recipes.ModelArguments(tiny_d_model=32, tiny_vocab_size=300, tiny_dropout=0.1), texts)
    assert default.config.scale_embedding is True and default.config.attention_dropout == 0.1 and default.config.dropout == 0.1
    args = recipes.ModelArguments(tiny_d_model=32, tiny_vocab_size=300, tiny_dropout=0.1, tiny_attention_dropout=0.0, tiny_scale_embedding=False)
    model, _, _ = recipes.load_model_and_tokenizer(args, texts)
    assert model.config.scale_embedding is False and model.config.attention_dropout == 0.0 and model.config.dropout == 0.1
    assert model.get_encoder().embed_tokens.embed_scale == 1.0


# ---------------------------------------------------------------------- style transfer
def test_style_transfer_embedded_default(scripts, tmp_path, capsys):
    metrics, stdout = _run(scripts, "run_style_transfer", [*SYNTHETIC, "--classifier_steps", "5"], tmp_path / "out", capsys)
    assert SYNTHETIC_NOTE in stdout and "-> positive" in stdout
    for key in ("classifier_accuracy", "model_negative_to_positive_accuracy", "model_positive_to_negative_bleu_source",
                "model_negative_to_positive_bleu_ref", "model_negative_to_positive_fluency_p_d"):
        assert key in metrics
    assert metrics["copy_source_negative_to_positive_bleu_source"] == pytest.approx(100.0)
    for direction in ("negative_to_positive", "positive_to_negative"):  # scored on the model's own outputs (no references)
        _assert_collapse_report(metrics, stdout, f"model_{direction}_")
    assert "loss of the model's own outputs" in stdout


def test_style_transfer_on_yelp(scripts, tmp_path, shared_data):
    """Yelp, with a held-out file of each style predicted (--do_predict) and human transfers of the style-0 file."""
    d = shared_data / "yelp"
    test0 = _write_lines(tmp_path / "t0.txt", _lines(d / "valid.0", 100, 106))
    metrics, _ = _run(scripts, "run_style_transfer", [
        "--train_file", str(d / "train.0"), "--train_target_file", str(d / "train.1"), "--validation_file", str(d / "valid.0"),
        "--validation_target_file", str(d / "valid.1"), "--max_train_samples", "48", "--max_eval_samples", "8", "--classifier_steps", "5",
        "--do_predict", "--test_file", test0, "--test_target_file", _write_lines(tmp_path / "t1.txt", _lines(d / "valid.1", 100, 106)),
        "--test_reference_file", test0,
    ], tmp_path / "out")
    assert "model_negative_to_positive_accuracy" in metrics and "model_negative_to_positive_bleu_ref" not in metrics
    assert {"test_model_negative_to_positive_bleu_ref", "test_model_negative_to_positive_source_gap", "test_model_positive_to_negative_distinct_fraction"} <= set(metrics)
    assert len(_lines(tmp_path / "out" / "test_predictions.txt")) == 6 and len(_lines(tmp_path / "out" / "test_target_predictions.txt")) == 6


# ---------------------------------------------------------------------- story generation
def test_story_generation_embedded_default(scripts, tmp_path, capsys):
    metrics, stdout = _run(scripts, "run_story_generation", [*SYNTHETIC, "--synthetic_eval_size", "4", "--max_target_length", "16", "--stories_per_prompt", "2",
                                                              "--rerank_candidates", "2", "--discriminator_steps", "3",
                                                              "--discriminator_train_size", "16"], tmp_path / "out", capsys)
    assert SYNTHETIC_NOTE in stdout and "schedule + rerank (best of 2)" in stdout
    for decoding in ("greedy", "sampling", "schedule", "schedule_rerank"):
        assert {f"{decoding}_distinct_1", f"{decoding}_distinct_2", f"{decoding}_self_bleu", f"{decoding}_p_real"} <= set(metrics)
    assert all(0 <= metrics[f"{d}_distinct_2"] <= 100 for d in ("greedy", "sampling", "schedule", "schedule_rerank"))
    _assert_collapse_report(metrics, stdout)


def test_story_generation_on_aesop(scripts, tmp_path, shared_data):
    metrics, _ = _run(scripts, "run_story_generation", [
        "--train_file", str(shared_data / "aesop" / "aesop4children.json"), "--story_column", "fable", "--max_train_samples", "48",
        "--max_target_length", "24", "--stories_per_prompt", "2", "--rerank_candidates", "0", "--max_eval_samples", "4",
    ], tmp_path / "out")
    assert {"eval_loss", "sampling_distinct_2", "schedule_self_bleu"} <= set(metrics) and "schedule_rerank_self_bleu" not in metrics
    _assert_collapse_report(metrics, "")


# ---------------------------------------------------------------------- shared pieces
def test_read_table_and_unpaired_halves(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"x": f"s{i}", "y": f"t{i}"}) for i in range(6)))
    (tmp_path / "b.txt").write_text("one\n\ntwo\n")
    (tmp_path / "c.csv").write_text("x,y\nu,v\n")
    assert read_table(str(tmp_path / "b.txt"), "y")["y"] == ["one", "two"]
    assert read_table(str(tmp_path / "c.csv")).column_names == ["x", "y"]
    corpus = Corpus(read_table(str(tmp_path / "a.jsonl")), None, "a")
    assert corpus.unpaired("x", "y") == (["s0", "s1", "s2"], ["t3", "t4", "t5"])  # no pair seen
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_table(str(tmp_path / "missing.json"))


def test_a_model_that_cannot_load_is_reported_first_and_short(scripts, tmp_path, monkeypatch, tokenizer):
    """A --model_name_or_path that is no saved folder, or a hub id not cached while offline, gives one short error
    naming it and how to make a local model, when the options are parsed: before any data or from_pretrained."""
    import transformers

    from hf_seqgan import recipes
    from hf_seqgan.tiny import build_tiny_model

    saved = tmp_path / "model"
    build_tiny_model("t5", tokenizer).save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    (tmp_path / "file.txt").write_text("not a model")
    cases = [(str(tmp_path / "missing"), FileNotFoundError, "names no folder"), (str(tmp_path / "file.txt"), FileNotFoundError, "is a file"),
             (str(tmp_path), FileNotFoundError, "folder without config.json"),
             ("someone/not-cached", OSError, r"neither a local folder nor in the Hugging Face cache.*offline")]

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained was called")

    with monkeypatch.context() as patch:
        patch.setattr(transformers.AutoModelForSeq2SeqLM, "from_pretrained", refuse)
        patch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
        for name, error, match in cases:
            with pytest.raises(error, match=match) as info:
                recipes.ModelArguments(model_name_or_path=name)
            message = str(info.value)
            assert repr(name) in message and "build_tiny_model" in message and "save_pretrained" in message, message
            assert len(message) < 600 and info.value.__cause__ is None and info.value.__context__ is None
        with pytest.raises(FileNotFoundError, match="--tokenizer_name .* names no folder"):
            recipes.ModelArguments(model_name_or_path=str(saved), tokenizer_name=str(tmp_path / "missing"))
        # a script stops at its argument parsing, before reading or generating data
        with pytest.raises(FileNotFoundError, match="names no folder"):
            scripts["run_summarization"].main(["--model_name_or_path", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")])
        # arguments built another way are checked on loading
        late = recipes.ModelArguments()
        late.model_name_or_path = "someone/not-cached"
        with pytest.raises(OSError, match="nor in the Hugging Face cache"):
            recipes.load_model_and_tokenizer(late, [])
    # a folder saved with save_pretrained loads
    model, tok, description = recipes.load_model_and_tokenizer(recipes.ModelArguments(model_name_or_path=str(saved)), [])
    assert model.config.model_type == "t5" and len(tok) == len(tokenizer) and description == str(saved)
