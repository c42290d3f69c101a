"""generate_and_rerank: the winner is the candidate with the best score, for every input, whatever
the proposal strategy, the scoring path (ids or texts), the extra metric or callable."""

import textwrap

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from hf_seqgan.discriminators import SequenceDiscriminator
from hf_seqgan.reranking import RerankOutput, generate_and_rerank
from hf_seqgan.rollout import RolloutEngine


def judge(tokenizer, conditional=True, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        pad_token_id=tokenizer.pad_token_id, num_labels=2, max_position_embeddings=256)
    return SequenceDiscriminator(BertForSequenceClassification(config).eval(), tokenizer, conditional=conditional)


def check_winners(out: RerankOutput, batch: int, n: int):
    assert out.candidates.shape[:2] == (batch, n) and out.scores.shape == (batch, n)
    assert torch.equal(out.best_index, out.scores.argmax(-1))
    for b in range(batch):
        assert torch.equal(out.sequences[b], out.candidates[b, out.best_index[b]])
        assert out.scores[b, out.best_index[b]] == out.scores[b].max()


@pytest.mark.parametrize(
    "family, strategy, kwargs",
    [
        ("bart", "sample", dict(top_k=0)),
        ("t5", "sample", dict(top_p=0.9)),
        ("marian", "beam", {}),
        ("pegasus", "stochastic_beam", dict(seed=0)),
        ("mbart", "stochastic_beam", dict(seed=1, gumbel_temperature=1.5)),
    ],
)
def test_winner_has_the_highest_discriminator_score(family, strategy, kwargs, make_model, tokenizer, source_batch):
    model, disc, n = make_model(family), judge(tokenizer), 4
    torch.manual_seed(0)
    out = generate_and_rerank(model, source_batch, disc, n, tokenizer=tokenizer, strategy=strategy, max_new_tokens=6, **kwargs)
    check_winners(out, 4, n)
    assert torch.equal(out.scores, out.discriminator_scores)
    flat = out.candidates.reshape(4 * n, -1)
    expected = disc.score_ids(flat, source_batch["input_ids"], torch.arange(4).repeat_interleave(n)).view(4, n)
    torch.testing.assert_close(out.discriminator_scores, expected)
    assert out.texts == [out.candidate_texts[b][int(out.best_index[b])] for b in range(4)]
    if strategy != "sample":
        assert all(len({tuple(c) for c in group.tolist()}) == n for group in out.candidates)


def test_scorer_and_metric_enter_the_total(make_model, tokenizer, source_batch, tmp_path):
    import evaluate

    folder = tmp_path / "word_count"
    folder.mkdir()
    (folder / "word_count.py").write_text(textwrap.dedent('''
        import datasets
        import evaluate


        class WordCount(evaluate.Metric):
            def _info(self):
                return evaluate.MetricInfo(description="words in common", citation="", inputs_description="",
                                           features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}))

            def _compute(self, predictions, references):
                return {"overlap": [len(set(p.split()) & set(r.split())) for p, r in zip(predictions, references)]}
    '''))
    metric = evaluate.load(str(folder))
    model, disc = make_model("bart"), judge(tokenizer, conditional=False)
    references = ["peru bank", "japan army", "spain court", "kenya team"]
    seen = {}

    def length(sources, candidates):
        seen["sources"] = sources
        return [float(len(c)) for c in candidates]

    torch.manual_seed(0)
    out = generate_and_rerank(model, source_batch, disc, 3, tokenizer=tokenizer, metric=metric, references=references, metric_weight=2.0,
                              scorer=length, scorer_weight=0.5, max_new_tokens=8)
    check_winners(out, 4, 3)
    texts = [t for group in out.candidate_texts for t in group]
    assert out.scorer_scores.reshape(-1).tolist() == [float(len(t)) for t in texts]
    overlap = [len(set(t.split()) & set(references[i // 3].split())) for i, t in enumerate(texts)]
    assert out.metric_scores.reshape(-1).tolist() == overlap
    torch.testing.assert_close(out.scores, out.discriminator_scores + 2.0 * out.metric_scores + 0.5 * out.scorer_scores)
    assert seen["sources"][::3] == tokenizer.batch_decode(source_batch["input_ids"], skip_special_tokens=True)


def test_engine_and_text_path(make_model, tokenizer, corpus, source_batch):
    from hf_seqgan.tiny import train_tokenizer

    other = train_tokenizer([p["headline"] for p in corpus], vocab_size=300)
    disc = judge(other)
    engine = RolloutEngine(make_model("t5"), tokenizer)
    out = generate_and_rerank(engine, source_batch, disc, 3, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    check_winners(out, 4, 3)
    sources = tokenizer.batch_decode(source_batch["input_ids"], skip_special_tokens=True)
    texts = [t for group in out.candidate_texts for t in group]
    expected = disc.score_texts(texts, [s for s in sources for _ in range(3)]).view(4, 3)
    torch.testing.assert_close(out.discriminator_scores, expected)


def test_validation(make_model, tokenizer, source_batch):
    model, disc = make_model("bart"), judge(tokenizer)
    cases = [
        (dict(num_candidates=0), "num_candidates"),
        (dict(strategy="best"), "strategy"),
        (dict(metric_weight=float("inf")), "metric_weight"),
        (dict(metric=object()), "references"),
        (dict(discriminator=disc.model), "SequenceDiscriminator"),
        (dict(scorer=len, tokenizer=None), "tokenizer"),
    ]
    for overrides, match in cases:
        kwargs = dict(model=model, inputs=source_batch, discriminator=disc, tokenizer=tokenizer, max_new_tokens=4)
        kwargs.update(overrides)
        with pytest.raises(ValueError, match=match):
            generate_and_rerank(**kwargs)
    with pytest.raises(ValueError, match="RolloutEngine"):
        generate_and_rerank(RolloutEngine(model, tokenizer), source_batch, disc, 2, strategy="beam", max_new_tokens=4)
