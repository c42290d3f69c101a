"""How a recipe run ends: the collapse check (:func:`check_outputs`, :func:`add_collapse_columns`),
predictions written for ``--do_predict`` (:func:`write_predictions`) and :func:`report` (samples, tables,
``results.json``, training curves).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Callable, Optional, Sequence


from .data import SYNTHETIC_NOTE, Corpus, load_test

logger = logging.getLogger("hf_seqgan.recipes")

__all__ = ["slug", "evaluate_splits", "check_outputs", "write_predictions", "flatten_table", "add_collapse_columns", "report"]


def check_outputs(model, tokenizer, sources: Sequence[str], outputs: Sequence[str], references: Optional[Sequence[str]] = None, *, data_args,
                  batch_size: int = 64, direction: Optional[dict] = None, seed: int = 0):
    """The collapse check of one evaluation (:func:`hf_seqgan.collapse.check_collapse`): distinct
    outputs, and the loss of ``references`` (else of the outputs) with true against shuffled sources
    on ``data_args.collapse_rows`` rows, with a shared model's ``direction`` tags (:func:`direction_tokens`)."""
    from ..collapse import check_collapse

    return check_collapse(model, tokenizer, sources, outputs, references, max_rows=data_args.collapse_rows, seed=seed,
                          max_source_length=data_args.max_source_length, max_target_length=data_args.max_target_length, batch_size=batch_size,
                          **(direction or {}))


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


def _format_table(rows: dict[str, dict[str, float]]) -> list[str]:
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    width = max([len(r) for r in rows] + [6]) + 2
    lines = ["".ljust(width) + "".join(f"{c:>14}" for c in columns)]
    for name, row in rows.items():
        lines.append(name.ljust(width) + "".join(f"{row[c]:>14.4f}" if c in row else f"{'':>14}" for c in columns))
    return lines


def slug(text: str) -> str:
    """``text`` before its first " (" as a metric-name part: lower case, each run of other characters one ``_``."""
    return re.sub(r"\W+", "_", text.split(" (")[0]).strip("_").lower()


def flatten_table(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{row: {column: value}}`` as flat metric names ``row_column`` (lowercase, words joined by
    ``_``, a parenthesised remark of the row left out): ``"schedule + rerank (best of 4)"`` and
    ``"p(real)"`` give ``schedule_rerank_p_real``."""
    return {f"{slug(row)}_{slug(column.replace('(', '_'))}": value for row, values in table.items() for column, value in values.items()}


def add_collapse_columns(table: dict[str, dict[str, float]], row: str, check) -> None:
    """Put a :class:`~hf_seqgan.collapse.CollapseReport`'s figures into ``table[row]``, next to the metric."""
    table.setdefault(row, {})["distinct %"] = 100 * check.distinct_fraction
    if check.loss_true is not None:
        table[row]["loss true src"] = check.loss_true
        table[row]["loss shuffled"] = check.loss_shuffled
    if check.doubled_word_share is not None:
        table[row]["doubled %"] = 100 * check.doubled_word_share


def report(metrics: dict[str, float], *, corpus: Corpus, model_description: str, output_dir: str, samples: Sequence[dict] = (),
           table: Optional[dict[str, dict[str, float]]] = None, title: str = "Results", plot: bool = True, collapse: Optional[dict] = None) -> dict[str, float]:
    """The last step of every recipe: sample outputs, what was run, a table comparing systems
    (``table``: row -> column -> value), the collapse checks (``collapse``: name ->
    :class:`~hf_seqgan.collapse.CollapseReport`, their figures added to the metrics), every metric,
    ``results.json`` and the training curves; the collapse warnings are printed again last."""
    collapse = dict(collapse or {})
    for name, check in collapse.items():
        metrics.update(check.metrics(f"{slug(name)}_" if name != "model" else "eval_"))
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
        from ..plotting import plot_training

        print(f"Curves: {plot_training(output_dir)}")
    warnings = [f"[{name}] {w}" for name, check in collapse.items() for w in check.warnings]
    notices = [f"[{name}] {w}" for name, check in collapse.items() for w in check.notices]
    if warnings or notices:  # said again last, where a reader of the run looks
        hint = [next(check.hint for check in collapse.values() if check.hint)] if warnings else []
        print("\n" + "\n".join(warnings + notices + hint))
    return metrics


def evaluate_splits(evaluate: Callable, validation, data_args, training_args, source_column: str, target_column: str, metrics: dict,
                    *, source_key: str = "source") -> tuple[list[dict], dict, dict]:
    """Run a recipe's ``evaluate(sources, references, prefix) -> (outputs, scores, table, check)`` on the
    validation split and, with ``--do_predict`` and ``--test_file``, on the test file (its predictions and
    metrics written to ``output_dir``). Updates ``metrics``; returns ``(samples, table, collapse)`` for :func:`report`."""
    samples, table, collapse = [], {}, {}
    if validation is not None:
        sources, references = list(validation[source_column]), list(validation[target_column])
        outputs, scores, table, collapse["model"] = evaluate(sources, references, "eval")
        metrics.update(scores)
        samples = [{source_key: s, "model": o, "reference": r} for s, o, r in list(zip(sources, outputs, references))[: data_args.num_printed_samples]]
    if training_args.do_predict and data_args.test_file:
        test_sources, test_references = load_test(data_args, source_column, target_column)
        outputs, scores, test_table, collapse["test"] = evaluate(test_sources, test_references, "test")
        scores.update(collapse["test"].metrics("test_"))
        write_predictions(training_args.output_dir, "test", outputs, scores)
        metrics.update(scores)
        table.update({f"test: {k}": v for k, v in test_table.items()})
    return samples, table, collapse
