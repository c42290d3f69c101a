"""Evaluation metrics shipped with hf_seqgan as `evaluate` modules, loaded by path (never from the hub).

- ``rouge``: ROUGE through `rouge_score` (same options and results as the hub's ``rouge``);
- ``sacrebleu``: ``sacrebleu.corpus_bleu`` (same inputs and outputs as the hub's ``sacrebleu``);
- ``self_bleu``: Texygen self-BLEU of a set of generated texts (Zhu et al. 2018);
- ``distinct_n``: distinct-n of a set of generated texts (Li et al. 2016).

`load_metric(name)` returns an ``evaluate.EvaluationModule``; the diversity metrics are also plain
functions in :mod:`hf_seqgan.metrics.functional`.

Examples:

```python
>>> from hf_seqgan.metrics import load_metric
>>> load_metric("distinct_n").compute(predictions=["a b a b"], n=[1, 2])
{'distinct_1': 0.5, 'distinct_2': 0.6666666666666666}

```
"""

from pathlib import Path

from .functional import distinct_n, self_bleu, self_bleu_scores

METRICS_DIR = Path(__file__).resolve().parent

__all__ = ["METRICS_DIR", "available_metrics", "load_metric", "distinct_n", "self_bleu", "self_bleu_scores"]


def available_metrics() -> list:
    """Names of the metrics shipped in this folder (each a ``<name>/<name>.py`` evaluate script)."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir() and (p / f"{p.name}.py").is_file())


def load_metric(name: str, **kwargs):
    """Load one of this package's evaluate modules by its local path, with no network.

    Args:
        name (`str`): one of `available_metrics()`: ``"rouge"``, ``"sacrebleu"``, ``"self_bleu"``,
            ``"distinct_n"``.
        **kwargs: passed on to ``evaluate.load`` (``experiment_id``, ``keep_in_memory``, ``cache_dir``,
            ``num_process``/``process_id`` for distributed evaluation, ...).

    Returns:
        `evaluate.EvaluationModule`: call ``.compute(predictions=..., references=..., **options)``.
    """
    names = available_metrics()
    if name not in names:
        raise ValueError(
            f"Unknown metric {name!r}. hf_seqgan ships {names}; load_metric never reaches the hub. For another metric "
            f"use evaluate.load(<hub name or local folder>) yourself (set HF_EVALUATE_OFFLINE=1 on a machine without network)."
        )
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), **kwargs)
