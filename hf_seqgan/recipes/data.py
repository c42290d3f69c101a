"""The recipes' data: :func:`load_corpus` -> :class:`Corpus` (``--dataset_name``, text / json / jsonl / csv /
tsv files with optional target files, or the synthetic default), :func:`load_test` for ``--test_file``,
:func:`tokenize_pairs` and the Lead-N baseline :func:`lead`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence


logger = logging.getLogger("hf_seqgan.recipes")

__all__ = ["SYNTHETIC_NOTE", "TEXT_SUFFIXES_TABLE", "Corpus", "read_table", "load_corpus", "load_test", "tokenize_pairs", "lead"]


SYNTHETIC_NOTE = ("NOTE: the data is SYNTHETIC (generated offline by hf_seqgan.synthetic): a toy with real structure, not a "
                  "benchmark. Pass --train_file/--validation_file or --dataset_name for real data.")


TEXT_SUFFIXES_TABLE = {"json": "json", "jsonl": "json", "csv": "csv", "tsv": "tsv"}


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


def tokenize_pairs(dataset, tokenizer, source_column: str, target_column: str, max_source_length: int, max_target_length: int, *, prefix: str = ""):
    """``input_ids``/``attention_mask``/``labels`` from a paired dataset (its text columns removed)."""

    def encode(batch):
        enc = tokenizer([prefix + s for s in batch[source_column]], max_length=max_source_length, truncation=True)
        enc["labels"] = tokenizer(text_target=batch[target_column], max_length=max_target_length, truncation=True)["input_ids"]
        return enc

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing")


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


def lead(sources: Sequence[str], words: int) -> list[str]:
    """The Lead-N baseline: the first ``words`` words of each source."""
    return [" ".join(s.split()[:words]) for s in sources]
