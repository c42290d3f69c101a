"""sacreBLEU as an `evaluate` module shipped with hf_seqgan (loaded by path, no network).

Same inputs, options and outputs as the hub's ``sacrebleu`` module: a wrapper around
``sacrebleu.corpus_bleu``.
"""

import datasets
import evaluate
import sacrebleu as scb

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
SacreBLEU (https://github.com/mjpost/sacreBLEU) computes shareable, reproducible corpus BLEU on
detokenized text with its own standard tokenization.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): detokenized system outputs.
    references (`list[list[str]]` or `list[str]`): the references of each prediction; every
        prediction must have the same number of references.
    smooth_method (`str`, defaults to `"exp"`): `"none"`, `"floor"`, `"add-k"` or `"exp"`.
    smooth_value (`float`, *optional*): for `"floor"` (default 0.1) and `"add-k"` (default 1).
    tokenize (`str`, *optional*): `"13a"` (default), `"none"`, `"zh"`, `"intl"`, `"char"`, ...
    lowercase (`bool`, defaults to `False`): case-insensitive BLEU.
    force (`bool`, defaults to `False`): accept input that looks tokenized already.
    use_effective_order (`bool`, defaults to `False`): drop n-gram orders with no match (for
        sentence-level BLEU).
Returns:
    `dict`: `score` (0-100), `counts`, `totals`, `precisions`, `bp`, `sys_len`, `ref_len`.
Examples:

    >>> from hf_seqgan.metrics import load_metric
    >>> bleu = load_metric("sacrebleu")
    >>> predictions = ["hello there general kenobi", "on our way to ankh morpork"]
    >>> references = [["hello there general kenobi", "hello there !"], ["goodbye ankh morpork", "ankh morpork"]]
    >>> round(bleu.compute(predictions=predictions, references=references)["score"], 1)
    39.8
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string", id="sequence"), "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references")}),
                datasets.Features({"predictions": datasets.Value("string", id="sequence"), "references": datasets.Value("string", id="sequence")}),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://aclanthology.org/W18-6319"],
        )

    def _compute(
        self, predictions, references, smooth_method="exp", smooth_value=None, force=False, lowercase=False, tokenize=None, use_effective_order=False
    ):
        if not predictions:
            raise ValueError("sacreBLEU needs at least one prediction; got an empty list.")
        if isinstance(references[0], str):  # one reference per prediction
            references = [[ref] for ref in references]
        n_refs = len(references[0])
        if any(len(refs) != n_refs for refs in references):
            raise ValueError(f"sacreBLEU needs the same number of references for each prediction (the first has {n_refs}); pad or trim the lists.")
        streams = [[refs[i] for refs in references] for i in range(n_refs)]  # (n_refs, N)
        output = scb.corpus_bleu(
            predictions, streams, smooth_method=smooth_method, smooth_value=smooth_value, force=force, lowercase=lowercase,
            use_effective_order=use_effective_order, **({"tokenize": tokenize} if tokenize else {}),
        )
        return {
            "score": output.score,
            "counts": output.counts,
            "totals": output.totals,
            "precisions": output.precisions,
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
        }
