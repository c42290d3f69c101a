"""What the diversity modules (`self_bleu/`, `distinct_n/`) share: they score a set of predictions alone."""

import datasets
import evaluate


def predictions_only_info(description: str, citation: str, inputs_description: str, reference_urls: list) -> evaluate.MetricInfo:
    """`MetricInfo` of a metric computed on ``predictions`` (strings) only, with no references."""
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features({"predictions": datasets.Value("string", id="sequence")}),
        reference_urls=reference_urls,
    )
