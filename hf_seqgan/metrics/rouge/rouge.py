"""ROUGE as an `evaluate` module shipped with hf_seqgan (loaded by path, no network).

Same inputs, options and outputs as the hub's ``rouge`` module; a thin wrapper around Google
Research's `rouge_score` package.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer
from rouge_score import scoring

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W04-1013",
    pages = "74--81",
}
"""

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares generated summaries or
translations with one or more references by n-gram (rouge1, rouge2, ...) and longest-common-
subsequence (rougeL, rougeLsum) overlap. It wraps the `rouge_score` package
(https://github.com/google-research/google-research/tree/master/rouge), whose default tokenizer
lowercases and keeps only [a-z0-9] tokens.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the texts to score.
    references (`list[str]` or `list[list[str]]`): one reference, or a list of references, per
        prediction (with several, each type keeps the best-scoring reference, `score_multi`).
    rouge_types (`list[str]`, *optional*): among `"rouge{n}"` (e.g. `"rouge1"`, `"rouge2"`),
        `"rougeL"` and `"rougeLsum"` (newline-split summary-level LCS). Defaults to
        `["rouge1", "rouge2", "rougeL", "rougeLsum"]`.
    use_stemmer (`bool`, defaults to `False`): Porter-stem the tokens.
    use_aggregator (`bool`, defaults to `True`): return the bootstrap-aggregated mid F1 per type;
        `False` returns the list of per-example F1 values per type.
    tokenizer (callable, *optional*): `str -> list[str]` replacing rouge_score's tokenizer.
Returns:
    `dict`: `{rouge_type: F1}` (floats, or lists of floats without the aggregator).
Examples:

    >>> from hf_seqgan.metrics import load_metric
    >>> rouge = load_metric("rouge")
    >>> rouge.compute(predictions=["hello there", "general kenobi"], references=["hello there", "general kenobi"])
    {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0, 'rougeLsum': 1.0}
"""


class _CallableTokenizer:
    """Gives a plain callable the ``tokenize`` method rouge_score expects."""

    def __init__(self, fn):
        self.fn = fn

    def tokenize(self, text):
        return self.fn(text)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string", id="sequence"), "references": datasets.Sequence(datasets.Value("string", id="sequence"))}),
                datasets.Features({"predictions": datasets.Value("string", id="sequence"), "references": datasets.Value("string", id="sequence")}),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://aclanthology.org/W04-1013"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False, tokenizer=None):
        rouge_types = list(rouge_types) if rouge_types is not None else ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        if not predictions:
            raise ValueError("ROUGE needs at least one prediction; got an empty list.")
        multi_ref = isinstance(references[0], list)
        scorer = rouge_scorer.RougeScorer(
            rouge_types=rouge_types, use_stemmer=use_stemmer, tokenizer=_CallableTokenizer(tokenizer) if tokenizer is not None else None
        )
        scores = [scorer.score_multi(ref, pred) if multi_ref else scorer.score(ref, pred) for ref, pred in zip(references, predictions)]
        if not use_aggregator:
            return {key: [float(s[key].fmeasure) for s in scores] for key in rouge_types}
        aggregator = scoring.BootstrapAggregator()
        for score in scores:
            aggregator.add_scores(score)
        return {key: float(value.mid.fmeasure) for key, value in aggregator.aggregate().items()}
