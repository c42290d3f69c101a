"""The arguments every recipe parses: :class:`ModelArguments`, :class:`DataArguments` (a recipe subclasses it
to add its columns), the presets sized for real data (:data:`PRESETS`), :func:`parse_recipe_args` (command
line or one JSON file over the recipe's defaults, with the chosen trainer's config fields as options) and
:func:`fit_lengths`; the trainers by name (:data:`TRAINERS`, :func:`trainer_classes`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from .. import registry as _registry

logger = logging.getLogger("hf_seqgan.recipes")

__all__ = ["TRAINERS", "SUPERVISED_TRAINERS", "ModelArguments", "DataArguments", "SupervisedDataArguments", "training_defaults", "peek_argument", "parse_args", "setup_logging", "PRESETS", "explicit_options", "fit_lengths", "parse_recipe_args", "trainer_classes"]


# name -> (module, config class, trainer class), from the trainers themselves (hf_seqgan.registry); each
# module is imported when chosen, so a broken optional trainer only matters to the run that asks for it.
TRAINERS = {name: (e.module, e.config, e.trainer) for name, e in _registry.trainer_entries().items()}


SUPERVISED_TRAINERS = tuple(name for name, e in _registry.trainer_entries().items() if e.supervised)


@dataclass
class ModelArguments:
    """Which model: a given one, or a tiny one built from a config."""

    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Hub name or local folder of a seq2seq model. If unset, a tiny model is built from a config with a "
                          "tokenizer trained on the training text (the embedded default, no network)."},
    )
    tokenizer_name: Optional[str] = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    tiny_family: str = field(default="bart", metadata={"help": "Family of the tiny model (bart, t5, marian, mbart, pegasus)."})
    tiny_vocab_size: int = field(default=600, metadata={"help": "Vocabulary of the tokenizer trained for the tiny model."})
    tiny_d_model: int = field(default=64, metadata={"help": "Hidden size of the tiny model (feed-forward: 4x)."})
    tiny_layers: int = field(default=2, metadata={"help": "Encoder and decoder layers of the tiny model."})
    tiny_heads: int = field(default=0, metadata={"help": "Attention heads of the tiny model (0: d_model / 16)."})
    tiny_dropout: float = field(default=0.0, metadata={"help": "Dropout of the tiny model (residual and attention paths)."})
    tiny_attention_dropout: Optional[float] = field(default=None, metadata={"help": "Dropout of the tiny model's attention weights (unset: --tiny_dropout)."})
    tiny_scale_embedding: bool = field(default=True, metadata={"help": "The tiny model multiplies its token embeddings by sqrt(d_model) (BART/mBART/Marian/Pegasus families)."})
    preset: Optional[str] = field(default=None, metadata={
        "help": "Sizes for real data instead of the toy default: 'cpu' (2 cores, <= 30 min: tokenizer of up to 8k chosen from the data, "
                "BART d_model 256 3+3 layers dropout 0.1 (none on attention, embeddings not scaled), batch 64, lr 1e-3 with 300 warm-up steps and inverse-sqrt decay, label smoothing "
                "0.1, batches grouped by length, a 25-minute time budget, lengths from the data's 99th percentiles) or 'gpu' (16k, d_model 512 6+6, batch 128, "
                "lr 7e-4, 1000 warm-up, 30k steps). Options given on the command line win.", "choices": ["cpu", "gpu"]})
    time_budget: float = field(default=0.0, metadata={"help": "Stop training after this many minutes of wall time (0: no budget)."})

    def __post_init__(self):
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"--preset {self.preset!r} is not one of {sorted(PRESETS)}.")
        # a model that cannot load is reported here, when the options are parsed, before any data is read
        _check_model_sources(self)


@dataclass
class DataArguments:
    """Where the data comes from and how much of it is used (a script adds its columns)."""

    dataset_name: Optional[str] = field(default=None, metadata={"help": "A dataset of the hub (or a local dataset folder) for datasets.load_dataset."})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_file: Optional[str] = field(default=None, metadata={"help": "Training data: text (one item a line), json, jsonl, csv or tsv. If no data is given, a synthetic corpus is generated."})
    train_target_file: Optional[str] = field(default=None, metadata={"help": "Target side of the training data in its own file (line-aligned for pairs; any corpus for unpaired training)."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Validation data, same formats."})
    validation_target_file: Optional[str] = field(default=None, metadata={"help": "Target side of the validation data in its own file."})
    validation_split_percentage: int = field(default=5, metadata={"help": "Percent of the training data held out for validation when none is given."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Keep only this many training items (quick runs)."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Keep only this many validation items."})
    max_source_length: int = field(default=64, metadata={"help": "Source tokens kept (truncation)."})
    max_target_length: int = field(default=32, metadata={"help": "Target tokens kept (truncation) and generated at most."})
    synthetic_train_size: int = field(default=2000, metadata={"help": "Synthetic training items when no data is given."})
    synthetic_eval_size: int = field(default=100, metadata={"help": "Synthetic validation items when no data is given."})
    num_printed_samples: int = field(default=3, metadata={"help": "Sample outputs printed at the end."})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "Evaluation and prediction decoding never repeat an n-gram of this size "
                                                           "(transformers' NoRepeatNGramLogitsProcessor; 3 is usual for summaries); 0: off."})
    no_doubled_tokens: bool = field(default=False, metadata={"help": "Evaluation and prediction decoding never emit the token just generated again (no "
                                                         "`not not`; hf_seqgan's NoDoubledTokenLogitsProcessor); pairs with the cycle's "
                                                         "--training_no_doubled_tokens."})
    test_file: Optional[str] = field(default=None, metadata={"help": "Held-out data to predict with --do_predict (same formats; any file, not only the corpus's)."})
    test_target_file: Optional[str] = field(default=None, metadata={"help": "References of --test_file in their own file (line-aligned); for style transfer the style-1 sentences."})
    test_reference_file: Optional[str] = field(default=None, metadata={"help": "Human references of --test_file (line-aligned): the same as --test_target_file for pairs; human transfers for style transfer."})
    max_predict_samples: Optional[int] = field(default=None, metadata={"help": "Keep only this many --test_file items (all by default)."})
    skip_training: bool = field(default=False, metadata={"help": "Do not train: evaluate (and with --do_predict predict) the given --model_name_or_path."})
    collapse_rows: int = field(default=256, metadata={"help": "Rows of each evaluation scored with true and shuffled sources for the collapse check."})
    plot_curves: bool = field(default=True, metadata={"help": "Draw the training curves into output_dir/training_curves.png at the end."})

    def __post_init__(self):
        for name in ("train_target_file", "validation_file", "validation_target_file"):
            if getattr(self, name) and not (self.train_file or self.dataset_name):
                raise ValueError(f"--{name} was given without --train_file: give the training data too (or no data argument for the synthetic default).")
        if (self.test_target_file or self.test_reference_file) and not self.test_file:
            raise ValueError("--test_target_file/--test_reference_file were given without --test_file.")
        if self.test_file and not os.path.isfile(self.test_file):
            raise FileNotFoundError(f"--test_file {self.test_file!r} does not exist.")
        if self.dataset_name and self.train_file:
            raise ValueError("Give --dataset_name or --train_file, not both.")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"--no_repeat_ngram_size must be >= 0 (0: off), got {self.no_repeat_ngram_size}.")
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}.")

    def repetition_blocking(self) -> dict:
        """The :func:`~hf_seqgan.recipes.generate_texts` keywords of ``--no_repeat_ngram_size`` and ``--no_doubled_tokens``."""
        return {"no_repeat_ngram_size": self.no_repeat_ngram_size, "no_doubled_tokens": self.no_doubled_tokens}


@dataclass
class SupervisedDataArguments(DataArguments):
    """`DataArguments` of a recipe that learns from pairs, with the choice of trainer."""

    trainer: str = field(default="mle", metadata={"help": "How the model learns from pairs (each trainer's config fields become options).",
                                                  "choices": list(SUPERVISED_TRAINERS)})


def training_defaults(name: str, **overrides) -> dict:
    """The training arguments of a recipe's embedded default (a quick CPU run), under ``overrides``."""
    defaults = dict(
        output_dir=f"outputs/{name}", max_steps=400, per_device_train_batch_size=32, per_device_eval_batch_size=64, learning_rate=3e-3,
        warmup_steps=20, logging_steps=50, save_strategy="no", report_to="none", seed=42, use_cpu=not torch.cuda.is_available(),
    )
    return {**defaults, **overrides}


def _argv(argv) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)


def _json_file(argv: list[str]) -> Optional[str]:
    return os.path.abspath(argv[0]) if len(argv) == 1 and argv[0].endswith(".json") else None


def peek_argument(argv, name: str, default=None, *, flag: bool = False):
    """The value of ``--name`` in ``argv`` (or in the one JSON file given), before full parsing;
    ``flag=True`` for a boolean (``--name``, ``--name true``)."""
    from transformers.hf_argparser import string_to_bool

    argv = _argv(argv)
    if _json_file(argv):
        with open(_json_file(argv), encoding="utf-8") as f:
            return json.load(f).get(name, default)
    parser = argparse.ArgumentParser(add_help=False)
    if flag:
        parser.add_argument(f"--{name}", type=string_to_bool, nargs="?", const=True, default=default)
    else:
        parser.add_argument(f"--{name}", default=default)
    return getattr(parser.parse_known_args(argv)[0], name)


def parse_args(dataclass_types: Sequence[type], argv=None, defaults: Optional[dict] = None) -> tuple:
    """Parse ``dataclass_types`` with `HfArgumentParser` from ``argv`` (default ``sys.argv[1:]``) or
    from one ``.json`` file, ``defaults`` (the script's embedded default run) under both."""
    from transformers import HfArgumentParser

    argv, defaults = _argv(argv), dict(defaults or {})
    parser = HfArgumentParser(tuple(dataclass_types))
    path = _json_file(argv)
    if path:
        with open(path, encoding="utf-8") as f:
            return parser.parse_dict({**defaults, **json.load(f)})
    parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=argv)


def setup_logging(training_args, name: str) -> None:
    """Step 2 of every recipe: the log format, INFO for the script's logger ``name`` and the
    library's, the Trainer's level for transformers; and the seed."""
    import transformers
    from transformers import set_seed

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    for log in (name, "hf_seqgan"):
        logging.getLogger(log).setLevel(logging.INFO)
    transformers.utils.logging.set_verbosity(max(training_args.get_process_log_level(), logging.WARNING))
    set_seed(training_args.seed)


# Sizes for real data (--preset). "cpu": the shape of the plain baseline that reached 33.8 sacreBLEU on Multi30k en->de
# in 25 min on 2 cores (benchmarks/bench_rl_multi30k.py); tiny_vocab_size is the cap of the size chosen from the data.
# Batches of similar source lengths (transformers' group_by_length sampler): on Multi30k a third fewer padded tokens per step.
# BART's own embedding choices (no sqrt(d_model) scale; no attention dropout on cpu, as the baseline): with the tiny
# builder's scaled embeddings and attention dropout 0.1 the same run scored 29.44 against 32.30 (too short outputs, BP 0.86).
PRESETS = {
    "cpu": dict(tiny_vocab_size=8000, tiny_d_model=256, tiny_layers=3, tiny_heads=4, tiny_dropout=0.1, tiny_attention_dropout=0.0,
                tiny_scale_embedding=False, per_device_train_batch_size=64,
                per_device_eval_batch_size=128, learning_rate=1e-3, warmup_steps=300, lr_scheduler_type="inverse_sqrt", label_smoothing_factor=0.1,
                max_steps=100000, time_budget=25.0, logging_steps=100, save_strategy="no", train_sampling_strategy="group_by_length"),
    "gpu": dict(tiny_vocab_size=16000, tiny_d_model=512, tiny_layers=6, tiny_heads=8, tiny_dropout=0.1, tiny_scale_embedding=False,
                per_device_train_batch_size=128,
                per_device_eval_batch_size=256, learning_rate=7e-4, warmup_steps=1000, lr_scheduler_type="inverse_sqrt", label_smoothing_factor=0.1,
                max_steps=30000, time_budget=0.0, logging_steps=200, save_strategy="no", train_sampling_strategy="group_by_length"),
}
PRESET_MAX_SOURCE, PRESET_MAX_TARGET = 256, 192


def explicit_options(argv) -> set[str]:
    """The option names given in ``argv`` (``--name`` or ``--name=value``) or in its one JSON file."""
    argv = _argv(argv)
    if _json_file(argv):
        with open(_json_file(argv), encoding="utf-8") as f:
            return set(json.load(f))
    return {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}


def fit_lengths(model_args, data_args, tokenizer, sources: Sequence[str], targets: Sequence[str], *, extra: int = 1) -> None:
    """With ``--preset``: ``max_source_length``/``max_target_length`` from the data, the 99th percentile of
    the tokenized lengths (+ ``extra`` for a direction tag), unless given on the command line."""
    if not getattr(model_args, "preset", None):
        return
    explicit = getattr(model_args, "explicit", set())
    for name, texts, cap in (("max_source_length", sources, PRESET_MAX_SOURCE), ("max_target_length", targets, PRESET_MAX_TARGET)):
        if name in explicit or not texts:
            continue
        sample = list(texts[:: max(1, len(texts) // 5000)])
        lengths = sorted(len(ids) for ids in tokenizer(sample, verbose=False)["input_ids"])  # measured, not truncated: no length warning
        value = min(cap, lengths[min(len(lengths) - 1, int(0.99 * len(lengths)))] + extra)
        setattr(data_args, name, value)
    logger.info("--preset %s: max_source_length %d, max_target_length %d (99th percentiles of the data)", model_args.preset,
                data_args.max_source_length, data_args.max_target_length)


def parse_recipe_args(data_class: type, argv, defaults: dict, *, method: str, logger_name: str) -> tuple:
    """Steps 1 and 2 of every recipe: ``(model_args, data_args, training_args)`` parsed with the
    configuration class of the trainer ``method`` (so its fields are options), then logging and seed."""
    config_class, _ = trainer_classes(method)
    preset = peek_argument(argv, "preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"--preset {preset!r} is not one of {sorted(PRESETS)}.")
        names = {f.name for f in dataclasses.fields(config_class)}
        defaults = {**defaults, **{k: v for k, v in PRESETS[preset].items() if k in names or k.startswith("tiny_") or k == "time_budget"}}
    model_args, data_args, training_args = parse_args((ModelArguments, data_class, config_class), argv, defaults)
    model_args.explicit = explicit_options(argv)
    setup_logging(training_args, logger_name)
    logging.getLogger(logger_name).info("Training with %s (%s)", method, config_class.__name__)
    return model_args, data_args, training_args


def trainer_classes(name: str) -> tuple[type, type]:
    """``(config class, trainer class)`` of the trainer called ``name`` in :data:`TRAINERS`."""
    entries = _registry.trainer_entries()
    if name not in entries:
        raise ValueError(f"--trainer {name!r} is not one of {sorted(entries)}.")
    try:
        return _registry.load(name)
    except ModuleNotFoundError as err:
        raise ImportError(f"--trainer {name} needs {entries[name].module}, which is not in this installation of hf_seqgan ({err}).") from err


_HUB_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[A-Za-z0-9_][\w.-]*)?$")  # "name" or "owner/name"


_MAKE_LOCAL = ("Make a local model with save_pretrained: e.g. hf_seqgan.tiny.train_tokenizer(texts) and build_tiny_model(family, "
               "tokenizer), then model.save_pretrained(folder) and tokenizer.save_pretrained(folder); or leave --model_name_or_path "
               "unset to build the tiny embedded model.")


def _check_model_source(name: str, option: str, files: Sequence[str]) -> None:
    """Before any ``from_pretrained``: ``name`` must be a folder holding one of ``files``, or a hub
    id, which offline (``HF_HUB_OFFLINE=1``) must be in the local cache. Raises one short error."""
    from huggingface_hub import constants, try_to_load_from_cache

    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, f)) for f in files):
            raise FileNotFoundError(f"{option} {name!r} is a folder without {' or '.join(files)}, so no saved model. {_MAKE_LOCAL}")
        return
    if os.path.exists(path) or not _HUB_ID.match(name):
        what = "is a file, not a model folder" if os.path.exists(path) else f"names no folder ({os.path.abspath(path)} does not exist)"
        raise FileNotFoundError(f"{option} {name!r} {what}. {_MAKE_LOCAL}")
    if constants.HF_HUB_OFFLINE and not any(isinstance(try_to_load_from_cache(name, f), str) for f in files):
        raise OSError(f"{option} {name!r} is neither a local folder nor in the Hugging Face cache, and the hub is offline "
                      f"(HF_HUB_OFFLINE=1): download it once with network (`hf download {name}`), or use a local folder. {_MAKE_LOCAL}")


def _check_model_sources(model_args) -> None:
    if model_args.model_name_or_path:
        _check_model_source(model_args.model_name_or_path, "--model_name_or_path", ("config.json", "adapter_config.json"))
        if model_args.tokenizer_name:
            _check_model_source(model_args.tokenizer_name, "--tokenizer_name", ("tokenizer_config.json", "tokenizer.json", "config.json"))
