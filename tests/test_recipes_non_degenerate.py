"""Each recipe, on a slice of its real corpus in ../shared/data, trains a model that does not collapse:
its outputs vary (a share of distinct outputs) and depend on the source (the loss with the sources
shuffled across rows is above the loss with the true sources). A recipe that collapses to one output
or ignores its input fails here.

The start is what a user without the Hub has: a small checkpoint pretrained here by denoising
(``examples/run_pretraining.py``, 300 steps on slices of the same corpora), then a short recipe run.
Measured when these tests were written: style transfer 100% / 94% distinct with source gaps
+0.76 / +1.06 nats per token, supervised translation 81% and +0.14, supervised summarization (150
steps) 69% and +0.09 (its ROUGE is still near 0: these tests guard against collapse, not quality); the unsupervised
translation, summarization and story-generation recipes, see their tests. From a random tiny model
instead, the same style-transfer run emits one output for every input (3-6% distinct, gap 0.00):
the thresholds below lie between the two.
"""

import json
import re

import pytest

from tests.conftest import SHARED_DATA
from tests.test_examples import _lines, _script, _write_lines

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"the real corpora folder {SHARED_DATA} is absent (it sits beside the project in CI "
                                                                  "and on dev machines)")
TINY = ["--vocab_size", "1500", "--d_model", "64", "--layers", "2", "--batch_size", "32", "--max_steps", "300", "--learning_rate", "3e-3",
        "--disable_tqdm", "true", "--logging_steps", "100"]
RUN = ["--max_steps", "60", "--learning_rate", "1e-3", "--max_eval_samples", "32", "--per_device_eval_batch_size", "32", "--disable_tqdm", "true",
       "--num_printed_samples", "1", "--plot_curves", "false", "--logging_steps", "20"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """``pretrained("en")``: a tiny BART pretrained here on slices of the English corpora;
    ``pretrained("en-de")``: on English and German Multi30k halves with their language codes."""
    made = {}
    root = tmp_path_factory.mktemp("pretrained")

    def get(which):
        if which not in made:
            d = root / which
            d.mkdir()
            if which == "en":
                files = [_write_lines(d / f"{name}.txt", _lines(SHARED_DATA / path, 0, 2000)) for name, path in (
                    ("ga", "gigaword/train.article.unpaired.txt"), ("gh", "gigaword/train.headline.unpaired.txt"), ("y0", "yelp/train.0"),
                    ("y1", "yelp/train.1"))]
            else:
                files = [f"en_XX={_write_lines(d / 'en.txt', _lines(SHARED_DATA / 'multi30k/train.en', 0, 3000))}",
                         f"de_DE={_write_lines(d / 'de.txt', _lines(SHARED_DATA / 'multi30k/train.de', 3000, 6000))}"]
            _script("run_pretraining").main(["--train_files", *files, *TINY, "--max_length", "48", "--output_dir", str(d / "model")])
            made[which] = str(d / "model")
        return made[which]

    return get


def _assert_not_collapsed(metrics, prefix, distinct, gap):
    assert metrics[prefix + "collapsed"] == 0.0, metrics
    assert metrics[prefix + "distinct_fraction"] >= distinct, metrics[prefix + "distinct_fraction"]
    assert metrics[prefix + "source_gap"] >= gap, metrics[prefix + "source_gap"]


def test_style_transfer_on_yelp_does_not_collapse(pretrained, tmp_path):
    d = SHARED_DATA / "yelp"
    metrics = _script("run_style_transfer").main([
        "--model_name_or_path", pretrained("en"), "--train_file", str(d / "train.0"), "--train_target_file", str(d / "train.1"),
        "--validation_file", str(d / "valid.0"), "--validation_target_file", str(d / "valid.1"), "--max_train_samples", "2000",
        "--classifier_steps", "20", "--adversarial_weight", "0", *RUN, "--output_dir", str(tmp_path)])
    for direction in ("negative_to_positive", "positive_to_negative"):
        _assert_not_collapsed(metrics, f"model_{direction}_", distinct=0.5, gap=0.2)


def test_supervised_translation_on_multi30k_does_not_collapse(pretrained, tmp_path):
    d = SHARED_DATA / "multi30k"
    metrics = _script("run_translation").main([
        "--supervised", "--model_name_or_path", pretrained("en-de"), "--train_file", str(d / "train.en"), "--train_target_file", str(d / "train.de"),
        "--max_train_samples", "2000", "--validation_file", str(d / "valid.en"), "--validation_target_file", str(d / "valid.de"), *RUN,
        "--output_dir", str(tmp_path)])
    _assert_not_collapsed(metrics, "eval_", distinct=0.5, gap=0.05)


def test_supervised_summarization_on_gigaword_does_not_collapse(pretrained, tmp_path):
    d = SHARED_DATA / "gigaword"
    metrics = _script("run_summarization").main([
        "--model_name_or_path", pretrained("en"), "--train_file", str(d / "valid.article.txt"), "--train_target_file", str(d / "valid.headline.txt"),
        "--max_train_samples", "900", "--max_source_length", "48", "--max_target_length", "16", *RUN, "--max_steps", "150",
        "--output_dir", str(tmp_path)])
    _assert_not_collapsed(metrics, "eval_", distinct=0.4, gap=0.03)


def test_unsupervised_translation_on_multi30k_halves_does_not_collapse(pretrained, tmp_path):
    """Denoising + back-translation (CycleTrainer, one shared model told the direction by its language
    codes) on English from the first half of Multi30k train and German from the second."""
    d = SHARED_DATA / "multi30k"
    en = _write_lines(tmp_path / "en.txt", _lines(d / "train.en", 0, 2000))
    de = _write_lines(tmp_path / "de.txt", _lines(d / "train.de", 14500, 16500))
    metrics = _script("run_translation").main([
        "--model_name_or_path", pretrained("en-de"), "--x_token", "en_XX", "--y_token", "de_DE", "--train_file", str(en), "--train_target_file", str(de),
        "--validation_file", str(d / "valid.en"), "--validation_target_file", str(d / "valid.de"), "--per_device_train_batch_size", "16",
        "--max_source_length", "32", "--max_target_length", "32", *RUN, "--max_steps", "120", "--output_dir", str(tmp_path / "out")])
    # measured: 90.6% distinct, gap +0.094 from the pretrained start; 3.1%, +0.000 from a random tiny mBART
    _assert_not_collapsed(metrics, "eval_", distinct=0.5, gap=0.05)


def test_unsupervised_summarization_on_gigaword_does_not_collapse(pretrained, tmp_path):
    """The cycle (denoising, reconstruction, a discriminator on headlines) on the unpaired article and
    headline files, scored on the paired valid file."""
    d = SHARED_DATA / "gigaword"
    metrics = _script("run_summarization").main([
        "--unsupervised", "--model_name_or_path", pretrained("en"), "--train_file", str(d / "train.article.unpaired.txt"),
        "--train_target_file", str(d / "train.headline.unpaired.txt"), "--max_train_samples", "2000", "--validation_file", str(d / "valid.article.txt"),
        "--validation_target_file", str(d / "valid.headline.txt"), "--per_device_train_batch_size", "16", "--max_source_length", "48",
        "--max_target_length", "16", "--kl_coef", "5", "--no_repeat_ngram_size", "3", *RUN, "--max_steps", "30",
        "--output_dir", str(tmp_path / "out")])
    # The documented Gigaword settings (the KL anchor, no repeated trigrams). Measured 2026-12-06: 96.9% distinct, gap
    # +0.128 from the pretrained start; 3.1%, -0.000 from a random tiny BART. Without the anchor the same 30 steps
    # collapsed on this machine (one output, `u.ssss...`), where an earlier machine measured 93.8% / +0.123.
    _assert_not_collapsed(metrics, "eval_", distinct=0.5, gap=0.05)


def test_story_generation_on_aesop_first_lines_does_not_collapse(pretrained, tmp_path):
    """First line -> the rest of the fable, on the Aesop fables (20% held out: 30 prompts). The model is weak
    at this size and the margins are small: from the pretrained start its greedy stories are distinct and
    carry some of the prompt's characters (`A Fox one day spied ...` -> `The Fox was very ...`), but a long
    reference's loss moves little with its first line, so the recipe's own check still says it ignores its
    input (gap below 0.05)."""
    rows = json.loads((SHARED_DATA / "aesop" / "aesop4children.json").read_text(encoding="utf-8"))
    pairs = [re.split(r"(?<=[.!?])\s+", r["fable"].strip(), maxsplit=1) for r in rows]
    data = tmp_path / "first_lines.json"
    data.write_text(json.dumps([{"first": p[0], "rest": p[1]} for p in pairs if len(p) == 2]), encoding="utf-8")
    metrics = _script("run_story_generation").main([
        "--model_name_or_path", pretrained("en"), "--train_file", str(data), "--text_column", "first", "--story_column", "rest",
        "--validation_split_percentage", "20", "--max_source_length", "48", "--max_target_length", "64", "--stories_per_prompt", "2",
        "--rerank_candidates", "0", "--no_repeat_ngram_size", "3", *RUN, "--max_steps", "300", "--output_dir", str(tmp_path / "out")])
    # measured: 100% distinct, loss gap +0.020 nats/token, the outputs' words +1.0 points more often from their own first line;
    # the same run from the recipe's random tiny BART: 86.7% distinct (short stories such as `Then the`), gap -0.002, words -1.1 points
    assert metrics["eval_distinct_fraction"] >= 0.5, metrics["eval_distinct_fraction"]
    assert metrics["eval_source_gap"] >= 0.01, metrics["eval_source_gap"]
    assert metrics["eval_source_overlap_gap"] >= 0.0, metrics["eval_source_overlap_gap"]
