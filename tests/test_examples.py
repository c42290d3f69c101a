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
    metrics, _ = _run(scripts, "run_summarization", [
        "--unsupervised", "--model_name_or_path", str(tmp_path / "sup"),
        "--train_file", str(giga / "train.article.unpaired.txt"), "--train_target_file", str(giga / "train.headline.unpaired.txt"),
        "--validation_file", str(giga / "valid.article.txt"), "--validation_target_file", str(giga / "valid.headline.txt"),
        "--max_train_samples", "32", "--max_eval_samples", "8", "--max_source_length", "48", "--max_target_length", "16",
    ], tmp_path / "cycle")
    assert {"eval_rouge1", "lead8_rouge1"} <= set(metrics) and "eval_loss" not in metrics
    assert (tmp_path / "cycle" / "reconstructor" / "config.json").is_file()


# ---------------------------------------------------------------------- translation
def test_translation_embedded_default(scripts, tmp_path, capsys):
    metrics, stdout = _run(scripts, "run_translation", SYNTHETIC, tmp_path / "out", capsys)
    assert SYNTHETIC_NOTE in stdout and "copy source" in stdout
    assert {"eval_bleu", "copy_source_bleu"} <= set(metrics)
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out").config.model_type == "mbart"


def test_translation_on_multi30k(scripts, tmp_path, shared_data):
    """English from the first half of train, German from the second half (no pair seen), two
    models and a discriminator on the German side."""
    d = shared_data / "multi30k"
    en, de = _lines(d / "train.en", 0, 48), _lines(d / "train.de", 14500, 14548)
    metrics, _ = _run(scripts, "run_translation", [
        "--train_file", _write_lines(tmp_path / "en.txt", en), "--train_target_file", _write_lines(tmp_path / "de.txt", de),
        "--validation_file", str(d / "valid.en"), "--validation_target_file", str(d / "valid.de"), "--max_eval_samples", "8",
        "--shared_model", "false", "--adversarial_weight", "0.5", "--max_new_tokens", "12",
    ], tmp_path / "out")
    assert metrics["copy_source_bleu"] > 0 and "eval_bleu" in metrics
    assert (tmp_path / "out" / "reconstructor" / "config.json").is_file() and (tmp_path / "out" / "discriminator").is_dir()


# ---------------------------------------------------------------------- style transfer
def test_style_transfer_embedded_default(scripts, tmp_path, capsys):
    metrics, stdout = _run(scripts, "run_style_transfer", [*SYNTHETIC, "--classifier_steps", "5"], tmp_path / "out", capsys)
    assert SYNTHETIC_NOTE in stdout and "-> positive" in stdout
    for key in ("classifier_accuracy", "model_negative_to_positive_accuracy", "model_positive_to_negative_bleu_source",
                "model_negative_to_positive_bleu_ref", "model_negative_to_positive_fluency_p_d"):
        assert key in metrics
    assert metrics["copy_source_negative_to_positive_bleu_source"] == pytest.approx(100.0)


def test_style_transfer_on_yelp(scripts, tmp_path, shared_data):
    d = shared_data / "yelp"
    metrics, _ = _run(scripts, "run_style_transfer", [
        "--train_file", str(d / "train.0"), "--train_target_file", str(d / "train.1"), "--validation_file", str(d / "valid.0"),
        "--validation_target_file", str(d / "valid.1"), "--max_train_samples", "48", "--max_eval_samples", "8", "--classifier_steps", "5",
    ], tmp_path / "out")
    assert "model_negative_to_positive_accuracy" in metrics and "model_negative_to_positive_bleu_ref" not in metrics


# ---------------------------------------------------------------------- story generation
def test_story_generation_embedded_default(scripts, tmp_path, capsys):
    metrics, stdout = _run(scripts, "run_story_generation", [*SYNTHETIC, "--synthetic_eval_size", "4", "--max_target_length", "16", "--stories_per_prompt", "2",
                                                              "--rerank_candidates", "2", "--discriminator_steps", "3",
                                                              "--discriminator_train_size", "16"], tmp_path / "out", capsys)
    assert SYNTHETIC_NOTE in stdout and "schedule + rerank (best of 2)" in stdout
    for decoding in ("greedy", "sampling", "schedule", "schedule_rerank"):
        assert {f"{decoding}_distinct_1", f"{decoding}_distinct_2", f"{decoding}_self_bleu", f"{decoding}_p_real"} <= set(metrics)
    assert all(0 <= metrics[f"{d}_distinct_2"] <= 100 for d in ("greedy", "sampling", "schedule", "schedule_rerank"))


def test_story_generation_on_aesop(scripts, tmp_path, shared_data):
    metrics, _ = _run(scripts, "run_story_generation", [
        "--train_file", str(shared_data / "aesop" / "aesop4children.json"), "--story_column", "fable", "--max_train_samples", "48",
        "--max_target_length", "24", "--stories_per_prompt", "2", "--rerank_candidates", "0", "--max_eval_samples", "4",
    ], tmp_path / "out")
    assert {"eval_loss", "sampling_distinct_2", "schedule_self_bleu"} <= set(metrics) and "schedule_rerank_self_bleu" not in metrics


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
