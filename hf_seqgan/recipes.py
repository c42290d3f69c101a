"""What the example recipes (``examples/run_*.py``) share, so that each script holds only its own steps.

- :class:`ModelArguments`, :class:`DataArguments`: the argument dataclasses every recipe parses
  (a script subclasses ``DataArguments`` to add its columns); :func:`parse_args` reads them with
  `HfArgumentParser` from the command line or from one JSON file, over the script's defaults, and
  :func:`peek_argument` reads one option (``--trainer``) before the dataclasses are chosen.
- :data:`TRAINERS`, :func:`trainer_classes`, :func:`build_trainer`: the library's trainers by name
  (``mle`` is `Seq2SeqTrainer` with the token-level loss that keeps gradient accumulation exact).
- :func:`load_corpus` -> :class:`Corpus`: ``--dataset_name``, ``--train_file``/``--validation_file``
  (text: one item a line; json, jsonl, csv, tsv) with optional ``--train_target_file``/
  ``--validation_target_file`` for the target side, or the deterministic synthetic default.
- :func:`load_model_and_tokenizer`: a given model (hub name or folder, checked when the options are
  parsed: a missing folder, or a hub id not cached offline, is one short error), or a tiny one built
  from a config with a tokenizer trained on the training text.
- :func:`build_trainer` / :func:`build_cycle_trainer` and :func:`train_and_save`: training, the
  loss on the validation set, saving (``--push_to_hub`` too).
- :func:`generate_texts` (with :func:`direction_tokens` for a cycle model's directions),
  :func:`train_classifier`, :func:`classify`: decoding and a small classifier for evaluation;
  :func:`report` ends a run (samples, tables of metrics, ``results.json``, the training curves from
  :func:`hf_seqgan.plotting.plot_training`).

See ``docs/recipes.md`` for the scripts themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import registry as _registry

logger = logging.getLogger(__name__)

__all__ = [
    "ModelArguments", "DataArguments", "SupervisedDataArguments", "Corpus", "TRAINERS", "SUPERVISED_TRAINERS",
    "training_defaults", "parse_args", "parse_recipe_args", "peek_argument", "setup_logging",
    "trainer_classes", "build_trainer", "read_table", "load_corpus", "load_model_and_tokenizer", "tokenize_pairs",
    "generate_texts", "direction_tokens", "check_outputs", "add_collapse_columns", "load_test", "write_predictions", "fit_lengths",
    "explicit_options", "PRESETS", "build_cycle_trainer", "train_classifier", "classify", "lead", "train_and_save", "flatten_table", "report", "SYNTHETIC_NOTE",
]

SYNTHETIC_NOTE = ("NOTE: the data is SYNTHETIC (generated offline by hf_seqgan.synthetic): a toy with real structure, not a "
                  "benchmark. Pass --train_file/--validation_file or --dataset_name for real data.")

# name -> (module, config class, trainer class), from the trainers themselves (hf_seqgan.registry); each
# module is imported when chosen, so a broken optional trainer only matters to the run that asks for it.
TRAINERS = {name: (e.module, e.config, e.trainer) for name, e in _registry.trainer_entries().items()}
SUPERVISED_TRAINERS = tuple(name for name, e in _registry.trainer_entries().items() if e.supervised)
TEXT_SUFFIXES_TABLE = {"json": "json", "jsonl": "json", "csv": "csv", "tsv": "tsv"}


# ---------------------------------------------------------------------- arguments
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
    preset: Optional[str] = field(default=None, metadata={
        "help": "Sizes for real data instead of the toy default: 'cpu' (2 cores, <= 30 min: tokenizer of up to 8k chosen from the data, "
                "BART d_model 256 3+3 layers dropout 0.1, batch 64, lr 1e-3 with 300 warm-up steps and inverse-sqrt decay, label smoothing "
                "0.1, a 25-minute time budget, lengths from the data's 99th percentiles) or 'gpu' (16k, d_model 512 6+6, batch 128, "
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
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}.")


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
PRESETS = {
    "cpu": dict(tiny_vocab_size=8000, tiny_d_model=256, tiny_layers=3, tiny_heads=4, tiny_dropout=0.1, per_device_train_batch_size=64,
                per_device_eval_batch_size=128, learning_rate=1e-3, warmup_steps=300, lr_scheduler_type="inverse_sqrt", label_smoothing_factor=0.1,
                max_steps=100000, time_budget=25.0, logging_steps=100, save_strategy="no"),
    "gpu": dict(tiny_vocab_size=16000, tiny_d_model=512, tiny_layers=6, tiny_heads=8, tiny_dropout=0.1, per_device_train_batch_size=128,
                per_device_eval_batch_size=256, learning_rate=7e-4, warmup_steps=1000, lr_scheduler_type="inverse_sqrt", label_smoothing_factor=0.1,
                max_steps=30000, time_budget=0.0, logging_steps=200, save_strategy="no"),
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
        lengths = sorted(len(ids) for ids in tokenizer(sample)["input_ids"])
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


# ---------------------------------------------------------------------- trainers
def trainer_classes(name: str) -> tuple[type, type]:
    """``(config class, trainer class)`` of the trainer called ``name`` in :data:`TRAINERS`."""
    entries = _registry.trainer_entries()
    if name not in entries:
        raise ValueError(f"--trainer {name!r} is not one of {sorted(entries)}.")
    try:
        return _registry.load(name)
    except ModuleNotFoundError as err:
        raise ImportError(f"--trainer {name} needs {entries[name].module}, which is not in this installation of hf_seqgan ({err}).") from err


def build_trainer(name: str, model, args, tokenizer, train_dataset, eval_dataset=None, **kwargs):
    """The trainer ``name`` on tokenized ``(input_ids, labels)`` datasets, with a padding collator.

    ``mle`` is `Seq2SeqTrainer` with :func:`~hf_seqgan.trainers.losses.token_loss_func` (plain
    `Seq2SeqTrainer` over-scales the update under gradient accumulation, see NOTES)."""
    from transformers import DataCollatorForSeq2Seq

    _, trainer_cls = trainer_classes(name)
    if name == "mle":
        from .trainers.losses import token_loss_func

        kwargs.setdefault("compute_loss_func", token_loss_func(args.label_smoothing_factor))
    # with a compute_loss_func the Trainer hands the labels to it, not to the model: the gold decoder
    # inputs come from the collator (the trainers take them from the batch when present)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    return trainer_cls(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                       processing_class=tokenizer, data_collator=kwargs.pop("data_collator", collator), **kwargs)


# ---------------------------------------------------------------------- data
@dataclass
class Corpus:
    """Training and validation data of a recipe. ``train_target``/``validation_target`` hold the
    target side when it was read from its own file and is not aligned with the source side."""

    train: "object"
    validation: Optional["object"]
    description: str
    synthetic: bool = False
    train_target: Optional["object"] = None
    validation_target: Optional["object"] = None

    def unpaired(self, source_column: str, target_column: str, split: str = "train", label_column: Optional[str] = None) -> tuple[list[str], list[str]]:
        """Two unaligned corpora from ``split``: the target file's when one was given; else the rows
        of each label (``label_column``: 0 source side, 1 target side); else the source side of the
        first half and the target side of the second half, so that no pair is seen."""
        data, other = getattr(self, split), getattr(self, f"{split}_target")
        if data is None:
            return [], []
        if other is not None:
            return list(data[source_column]), list(other[target_column])
        if label_column is not None and label_column in data.column_names:
            labels = list(data[label_column])
            return ([t for t, y in zip(data[source_column], labels) if int(y) == 0],
                    [t for t, y in zip(data[target_column], labels) if int(y) == 1])
        half = len(data) // 2
        return list(data[source_column][:half]), list(data[target_column][half:])


def read_table(path: str, text_column: str = "text"):
    """A `datasets.Dataset` from a local file: json/jsonl (records or a list of records), csv, tsv,
    or any other file read as text, one item a non-empty line, into ``text_column``."""
    from datasets import Dataset

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Data file {path!r} does not exist.")
    kind = TEXT_SUFFIXES_TABLE.get(os.path.basename(path).rsplit(".", 1)[-1].lower(), "text")
    if kind == "json":
        return Dataset.from_json(path)
    if kind in ("csv", "tsv"):
        return Dataset.from_csv(path, sep="\t" if kind == "tsv" else ",")
    with open(path, encoding="utf-8") as f:
        return Dataset.from_dict({text_column: [line.strip() for line in f if line.strip()]})


def _check_columns(dataset, columns, where: str, flags: dict) -> None:
    for column in columns:
        if column not in dataset.column_names:
            flag = flags.get(column, "the column arguments")
            raise ValueError(f"Column {column!r} not in {where} data (columns: {dataset.column_names}); set {flag}.")


def _attach(data, target, column: str, where: str):
    if len(target) != len(data):
        raise ValueError(f"The {where} target file has {len(target)} items but the {where} file {len(data)}: paired files must be line-aligned.")
    return data.add_column(column, list(target[column])) if column not in data.column_names else data


def load_corpus(data_args, training_args, *, source_column: str, target_column: str, synthetic: Callable[..., list[dict]],
                synthetic_what: str, paired_train: bool = True, paired_validation: bool = True, column_flags: Optional[dict] = None) -> Corpus:
    """Step 3 of every recipe: the data as a :class:`Corpus`.

    A paired split (``paired_train``, ``paired_validation``) needs ``source_column`` and
    ``target_column`` in the same rows (a target file must then be line-aligned and is joined in);
    an unpaired one takes the two sides as they come (see :meth:`Corpus.unpaired`).
    ``synthetic(n, seed=...)`` gives the default rows.
    """
    from datasets import Dataset, load_dataset

    flags = column_flags or {}
    seed = training_args.seed
    synthetic_data = not (data_args.dataset_name or data_args.train_file)
    train_target = validation_target = None
    if data_args.dataset_name:
        raw = load_dataset(data_args.dataset_name, data_args.dataset_config_name)
        train, validation = raw["train"], raw.get("validation")
        description = f"{data_args.dataset_name} (datasets.load_dataset)"
    elif data_args.train_file:
        train = read_table(data_args.train_file, source_column)
        validation = read_table(data_args.validation_file, source_column) if data_args.validation_file else None
        train_target = read_table(data_args.train_target_file, target_column) if data_args.train_target_file else None
        validation_target = read_table(data_args.validation_target_file, target_column) if data_args.validation_target_file else None
        description = data_args.train_file + (f" + {data_args.train_target_file}" if train_target is not None else "")
    else:
        logger.info("No data given: generating a synthetic %s corpus (hf_seqgan.synthetic), no network used.", synthetic_what)
        train = Dataset.from_list(synthetic(data_args.synthetic_train_size, seed=seed))
        validation = Dataset.from_list(synthetic(data_args.synthetic_eval_size, seed=seed + 1))
        description = f"synthetic {synthetic_what} (hf_seqgan.synthetic, seed {seed})"
    if paired_train and train_target is not None:
        train, train_target = _attach(train, train_target, target_column, "training"), None
    if paired_validation and validation_target is not None:
        validation, validation_target = _attach(validation, validation_target, target_column, "validation"), None
    for split, data, other in (("train", train, train_target), ("validation", validation, validation_target)):
        if data is not None:
            _check_columns(data, [source_column] + ([target_column] if other is None else []), split, flags)
        if other is not None:
            _check_columns(other, [target_column], f"{split} target", flags)
    if validation is None and data_args.validation_split_percentage and train_target is None:
        if len(train) * data_args.validation_split_percentage < 100:
            raise ValueError(f"{len(train)} training rows are too few to hold out {data_args.validation_split_percentage}% for validation: "
                             "give --validation_file or more data.")
        split = train.train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
        train, validation = split["train"], split["test"]
        description += f" ({data_args.validation_split_percentage}% held out for validation)"

    def cap(dataset, n):
        return dataset.select(range(min(n, len(dataset)))) if dataset is not None and n is not None else dataset

    corpus = Corpus(cap(train, data_args.max_train_samples), cap(validation, data_args.max_eval_samples), description, synthetic_data,
                    cap(train_target, data_args.max_train_samples), cap(validation_target, data_args.max_eval_samples))
    return corpus


# ---------------------------------------------------------------------- model
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


def load_model_and_tokenizer(model_args, training_texts: Sequence[str], *, seed: int = 0, special_tokens: Sequence[str] = (), max_length: int = 256):
    """Step 4 of every recipe: ``(model, tokenizer, description)``: the given model and its
    tokenizer (``special_tokens`` added, embeddings resized), or a tiny model of
    ``model_args.tiny_family`` with a byte-level BPE tokenizer trained on ``training_texts``."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from .tiny import LANGUAGE_CODES, build_tiny_model, train_tokenizer

    if model_args.model_name_or_path:
        name = model_args.model_name_or_path
        _check_model_sources(model_args)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or name)
            model = AutoModelForSeq2SeqLM.from_pretrained(name)
        except OSError as err:
            raise OSError(f"Could not load {name!r} ({err}). With no network, pass a local folder saved with save_pretrained, "
                          "or leave --model_name_or_path unset for the tiny embedded model.") from err
        new = [t for t in special_tokens if t not in tokenizer.get_vocab()]
        if new:
            tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
            model.resize_token_embeddings(len(tokenizer))
        return model, tokenizer, name
    d = model_args.tiny_d_model
    vocab = model_args.tiny_vocab_size
    if getattr(model_args, "preset", None) and "tiny_vocab_size" not in getattr(model_args, "explicit", set()):
        from .pretraining import choose_vocab_size

        vocab = choose_vocab_size(training_texts, maximum=vocab)  # the preset's size is the cap
    tokenizer = train_tokenizer(training_texts, vocab_size=vocab, language_codes=tuple(LANGUAGE_CODES) + tuple(special_tokens),
                                model_max_length=max_length)
    drop = model_args.tiny_dropout
    dropout = dict(dropout_rate=drop) if model_args.tiny_family == "t5" else dict(dropout=drop, attention_dropout=drop)
    model = build_tiny_model(model_args.tiny_family, tokenizer, seed=seed, d_model=d, ffn=4 * d, layers=model_args.tiny_layers,
                             heads=model_args.tiny_heads or max(1, d // 16), max_positions=max(256, max_length + 8), **dropout)
    description = (f"tiny {model_args.tiny_family} built from a config (d_model={d}, {model_args.tiny_layers} layers, "
                   f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), tokenizer of {len(tokenizer)} tokens trained on the training text"
                   + (f", --preset {model_args.preset}" if getattr(model_args, "preset", None) else ""))
    return model, tokenizer, description


def tokenize_pairs(dataset, tokenizer, source_column: str, target_column: str, max_source_length: int, max_target_length: int, *, prefix: str = ""):
    """``input_ids``/``attention_mask``/``labels`` from a paired dataset (its text columns removed)."""

    def encode(batch):
        enc = tokenizer([prefix + s for s in batch[source_column]], max_length=max_source_length, truncation=True)
        enc["labels"] = tokenizer(text_target=batch[target_column], max_length=max_target_length, truncation=True)["input_ids"]
        return enc

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing")


# ---------------------------------------------------------------------- evaluation helpers
def generate_texts(model, tokenizer, sources: Sequence[str], *, max_source_length: int, max_new_tokens: int, batch_size: int = 64,
                   num_samples: int = 1, source_token_id: Optional[int] = None, forced_token_id: Optional[int] = None,
                   logits_processor=None, **sample_kwargs) -> list[str]:
    """Decode ``sources`` in batches with the :class:`~hf_seqgan.rollout.RolloutEngine` (greedy
    unless ``do_sample=True``; ``generator``, ``top_k``, ... passed on); ``num_samples`` outputs per
    source, source-major. ``source_token_id`` is put in front of every source and ``forced_token_id``
    forced as the first generated token (a shared model's direction tags, see :func:`direction_tokens`)."""
    from transformers import ForcedBOSTokenLogitsProcessor, LogitsProcessorList

    from .rollout import RolloutEngine
    from .directions import prepend_token

    sample_kwargs.setdefault("do_sample", False)
    processors = LogitsProcessorList(logits_processor or [])
    if forced_token_id is not None:
        processors.insert(0, ForcedBOSTokenLogitsProcessor(forced_token_id))
        max_new_tokens += 1
    model.eval()
    engine = RolloutEngine(model, tokenizer)
    out: list[str] = []
    for i in range(0, len(sources), batch_size):
        batch = engine.tokenize(list(sources[i : i + batch_size]), max_length=max_source_length)
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, S)
        ids, mask = prepend_token(ids, mask, source_token_id)  # (B, 1 + S) with a direction tag
        rollout = engine.sample(ids, mask, max_new_tokens=max_new_tokens, num_samples=num_samples,
                                logits_processor=processors or None, **sample_kwargs)
        out += engine.decode(rollout)
    return [text.strip() for text in out]


def direction_tokens(args, tokenizer, to: str = "y") -> dict:
    """The :func:`generate_texts` keywords that make a model of a
    :class:`~hf_seqgan.trainers.cycle.CycleTrainer` (``args``: its `CycleConfig`) translate into
    domain ``to`` ("x" or "y"): its direction tokens, nothing when the config has none."""
    from .directions import Direction

    if not args.x_token:
        return {}
    tags = tokenizer.convert_tokens_to_ids([args.x_token, args.y_token])
    source, target = tags if to == "y" else tags[::-1]
    direction = Direction(model=None, engine=None, target_tag=target, source_tag=source, position=args.direction_token_position)
    return {"source_token_id": direction.encoder_tag, "forced_token_id": direction.forced_tag}


def build_cycle_trainer(model, args, tokenizer, x_texts: Sequence[str], y_texts: Sequence[str], *, max_x_length: int, max_y_length: int, **kwargs):
    """A :class:`~hf_seqgan.trainers.cycle.CycleTrainer` on two unaligned corpora of texts (X, the
    source domain, and Y), tokenized here; ``kwargs`` go to the trainer (reconstructor, discriminator...)."""
    from datasets import Dataset

    _, trainer_cls = trainer_classes("cycle")
    if args.x_token:  # each direction forces its own domain token (mBART's generation config forces one language)
        model.generation_config.forced_bos_token_id = None

    def tokenized(texts, max_length):
        data = Dataset.from_dict({"text": list(texts)})
        return data.map(lambda b: tokenizer(b["text"], max_length=max_length, truncation=True), batched=True, remove_columns=["text"], desc="Tokenizing")

    return trainer_cls(model=model, args=args, train_dataset=tokenized(x_texts, max_x_length), target_domain_dataset=tokenized(y_texts, max_y_length),
                       processing_class=tokenizer, **kwargs)


def train_classifier(classifier, texts: Sequence[str], labels: Sequence[int], *, sources: Optional[Sequence[str]] = None, steps: int = 100,
                     batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0, disable_tqdm: bool = False):
    """Train a :class:`~hf_seqgan.discriminators.SequenceDiscriminator` (its classifier) on labeled
    texts (with sources when conditional) by cross-entropy; returns it in eval mode."""
    from tqdm.auto import trange

    if len(texts) != len(labels) or not texts:
        raise ValueError(f"train_classifier needs one label per text and at least one text, got {len(texts)} texts and {len(labels)} labels.")
    device = classifier.device
    targets = torch.as_tensor(list(labels), dtype=torch.long)  # (N,)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in classifier.parameters() if p.requires_grad], lr=learning_rate)
    classifier.train()
    for _ in trange(steps, desc="Training the evaluation classifier", disable=disable_tqdm):
        idx = torch.randint(len(texts), (min(batch_size, len(texts)),), generator=generator)  # (b,)
        logits = classifier.logits_from_texts([texts[i] for i in idx], [sources[i] for i in idx] if sources is not None else None)  # (b, C)
        loss = torch.nn.functional.nll_loss(classifier.log_probs(logits), targets[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return classifier.eval()


@torch.no_grad()
def classify(classifier, texts: Sequence[str], *, sources: Optional[Sequence[str]] = None, batch_size: int = 128) -> torch.Tensor:
    """Class log-probabilities `(N, C)` of ``texts`` under ``classifier`` (eval mode)."""
    classifier.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        part = list(sources[i : i + batch_size]) if sources is not None else None
        out.append(classifier.log_probs(classifier.logits_from_texts(list(texts[i : i + batch_size]), part)).cpu())
    return torch.cat(out) if out else torch.empty(0, classifier.num_labels)


def check_outputs(model, tokenizer, sources: Sequence[str], outputs: Sequence[str], references: Optional[Sequence[str]] = None, *, data_args,
                  batch_size: int = 64, direction: Optional[dict] = None, seed: int = 0):
    """The collapse check of one evaluation (:func:`hf_seqgan.collapse.check_collapse`): distinct
    outputs, and the loss of ``references`` (else of the outputs) with true against shuffled sources
    on ``data_args.collapse_rows`` rows, with a shared model's ``direction`` tags (:func:`direction_tokens`)."""
    from .collapse import check_collapse

    return check_collapse(model, tokenizer, sources, outputs, references, max_rows=data_args.collapse_rows, seed=seed,
                          max_source_length=data_args.max_source_length, max_target_length=data_args.max_target_length, batch_size=batch_size,
                          **(direction or {}))


def load_test(data_args, source_column: str, target_column: Optional[str] = None) -> tuple[list[str], Optional[list[str]]]:
    """``(sources, references or None)`` of ``--test_file``: its ``source_column`` (a text file: its
    lines), references from ``--test_target_file`` / ``--test_reference_file`` (line-aligned) or from
    the file's ``target_column``."""
    data = read_table(data_args.test_file, source_column)
    _check_columns(data, [source_column], "test", {})
    sources, references = list(data[source_column]), None
    ref_file = data_args.test_target_file or data_args.test_reference_file
    if ref_file:
        references = list(read_table(ref_file, target_column or "text")[target_column or "text"])
        if len(references) != len(sources):
            raise ValueError(f"--test_file has {len(sources)} items but its references ({ref_file}) {len(references)}: they must be line-aligned.")
    elif target_column and target_column in data.column_names:
        references = list(data[target_column])
    cap = data_args.max_predict_samples
    return sources[:cap] if cap else sources, (references[:cap] if cap and references else references)


def write_predictions(output_dir: str, split: str, predictions: Sequence[str], metrics: dict[str, float]) -> str:
    """``{split}_predictions.txt`` (one output a line) and ``{split}_results.json`` in ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{split}_predictions.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(p.replace("\n", " ") + "\n" for p in predictions))
    with open(os.path.join(output_dir, f"{split}_results.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    logger.info("Predictions of %d %s rows written to %s", len(predictions), split, path)
    return path


def lead(sources: Sequence[str], words: int) -> list[str]:
    """The Lead-N baseline: the first ``words`` words of each source."""
    return [" ".join(s.split()[:words]) for s in sources]


# ---------------------------------------------------------------------- end of a run
def train_and_save(trainer, training_args, eval_dataset=None, *, time_budget: float = 0.0, skip_training: bool = False) -> dict[str, float]:
    """Train; evaluate the teacher-forced loss on ``eval_dataset`` if given; save the model (and the
    tokenizer, auxiliary models) and the trainer state (the curves' source); push to the hub with
    ``--push_to_hub``. Returns ``train_loss``, ``train_runtime_s``, ``train_steps`` (and ``eval_loss``).
    ``time_budget`` (minutes) stops training early; a progress line (steps/s, ETA) is logged every
    ``logging_steps``; ``skip_training`` only evaluates.

    The loss is evaluated before saving, so that nothing saving does (model cards, hub pushes) can
    touch the state `evaluate()` runs in: in transformers 5, building a second `TrainingArguments`
    resets accelerate's shared state."""
    from .pretraining import ProgressCallback, TimeBudgetCallback

    if skip_training:
        metrics = {}
        if eval_dataset is not None:
            metrics["eval_loss"] = trainer.evaluate(eval_dataset)["eval_loss"]
        return metrics
    trainer.add_callback(ProgressCallback(time_budget))
    if time_budget:
        trainer.add_callback(TimeBudgetCallback(time_budget))
    result = trainer.train()
    metrics = {"train_loss": result.training_loss, "train_runtime_s": result.metrics["train_runtime"], "train_steps": float(trainer.state.global_step)}
    if eval_dataset is not None:
        metrics["eval_loss"] = trainer.evaluate(eval_dataset)["eval_loss"]
    trainer.save_model()
    trainer.save_state()
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return metrics


def _format_table(rows: dict[str, dict[str, float]]) -> list[str]:
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    width = max([len(r) for r in rows] + [6]) + 2
    lines = ["".ljust(width) + "".join(f"{c:>14}" for c in columns)]
    for name, row in rows.items():
        lines.append(name.ljust(width) + "".join(f"{row[c]:>14.4f}" if c in row else f"{'':>14}" for c in columns))
    return lines


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text.split(" (")[0]).strip("_").lower()


def flatten_table(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{row: {column: value}}`` as flat metric names ``row_column`` (lowercase, words joined by
    ``_``, a parenthesised remark of the row left out): ``"schedule + rerank (best of 4)"`` and
    ``"p(real)"`` give ``schedule_rerank_p_real``."""
    return {f"{_slug(row)}_{_slug(column.replace('(', '_'))}": value for row, values in table.items() for column, value in values.items()}


def add_collapse_columns(table: dict[str, dict[str, float]], row: str, check) -> None:
    """Put a :class:`~hf_seqgan.collapse.CollapseReport`'s figures into ``table[row]``, next to the metric."""
    table.setdefault(row, {})["distinct %"] = 100 * check.distinct_fraction
    if check.loss_true is not None:
        table[row]["loss true src"] = check.loss_true
        table[row]["loss shuffled"] = check.loss_shuffled


def report(metrics: dict[str, float], *, corpus: Corpus, model_description: str, output_dir: str, samples: Sequence[dict] = (),
           table: Optional[dict[str, dict[str, float]]] = None, title: str = "Results", plot: bool = True, collapse: Optional[dict] = None) -> dict[str, float]:
    """The last step of every recipe: sample outputs, what was run, a table comparing systems
    (``table``: row -> column -> value), the collapse checks (``collapse``: name ->
    :class:`~hf_seqgan.collapse.CollapseReport`, their figures added to the metrics), every metric,
    ``results.json`` and the training curves; the collapse warnings are printed again last."""
    collapse = dict(collapse or {})
    for name, check in collapse.items():
        metrics.update(check.metrics(f"{_slug(name)}_" if name != "model" else "eval_"))
    for key, value in metrics.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"Metric {key} is {value!r}, not a finite number: the run went wrong (check the data and the learning rate).")
    if samples:
        print("\nSample outputs:")
        for sample in samples:
            width = max(len(k) for k in sample) + 2
            for key, text in sample.items():
                print(f"  {key + ':':<{width}}{text}")
            print()
    print(f"== {title} ==")
    print(f"Data:   {corpus.description}")
    if corpus.synthetic:
        print(SYNTHETIC_NOTE)
    print(f"Model:  {model_description}")
    print(f"Saved:  {os.path.abspath(output_dir)}")
    if table:
        print("\n" + "\n".join(_format_table(table)))
    for name, check in collapse.items():
        print("\n" + "\n".join(check.lines(name)))
    print()
    width = max([len(key) for key in metrics] + [6]) + 2
    print(f"{'metric':<{width}}{'value':>14}")
    for key, value in metrics.items():
        print(f"{key:<{width}}{value:>14.4f}")
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    if plot and os.path.isfile(os.path.join(output_dir, "trainer_state.json")):
        from .plotting import plot_training

        print(f"Curves: {plot_training(output_dir)}")
    warnings = [f"[{name}] {w}" for name, check in collapse.items() for w in check.warnings]
    if warnings:  # said again last, where a reader of the run looks
        hint = next(check.hint for check in collapse.values() if check.hint)
        print("\n" + "\n".join(warnings + [hint]))
    return metrics

