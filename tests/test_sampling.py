import math

import numpy as np
import pytest
import torch
from scipy import stats

from hf_seqgan.sampling import categorical_sample, gumbel_max_sample, gumbel_noise, gumbel_softmax, soft_embed
from tests.conftest import FAMILIES


def test_gumbel_noise_is_standard_gumbel():
    g = gumbel_noise((40000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.isfinite(g).all()
    result = stats.kstest(g.numpy(), "gumbel_r")
    assert result.pvalue > 1e-3, result
    assert g.mean().item() == pytest.approx(np.euler_gamma, abs=0.03)
    assert g.var().item() == pytest.approx(math.pi**2 / 6, rel=0.05)


def test_gumbel_noise_is_seedable():
    a = gumbel_noise((5, 7), generator=torch.Generator().manual_seed(3))
    b = gumbel_noise((5, 7), generator=torch.Generator().manual_seed(3))
    c = gumbel_noise((5, 7), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gumbel_max_matches_softmax_sampling():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    n = 30000
    samples = gumbel_max_sample(logits.expand(n, -1), generator=torch.Generator().manual_seed(0))
    observed = torch.bincount(samples, minlength=6).numpy()
    expected = torch.softmax(logits.double(), -1).numpy() * n
    chi2 = stats.chisquare(observed, expected)
    assert chi2.pvalue > 1e-3, (observed, expected)
    # and a wrong distribution is rejected by the same test (the test has power)
    wrong = torch.softmax(logits.double() / 1.3, -1).numpy() * n
    assert stats.chisquare(observed, wrong).pvalue < 1e-6


def test_one_pass_sampler_matches_softmax_sampling_and_its_normaliser():
    """categorical_sample draws exactly from softmax(scores) (chi-square over 40,000 draws of each of
    3 rows), never a -inf token, and returns the scores' log-sum-exp; seeded draws repeat."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 12, generator=g) * 2
    scores[1, 4] = float("-inf")
    scores[2, :6] = float("-inf")
    draws = 40_000
    rows = scores.repeat_interleave(draws, 0)  # (3 * N, V)
    tokens, lse = categorical_sample(rows, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lse, torch.logsumexp(rows, -1))
    probs = torch.softmax(scores, -1)
    for r in range(3):
        counts = torch.bincount(tokens[r * draws:(r + 1) * draws], minlength=12).double()
        assert counts[probs[r] == 0].sum() == 0
        live = probs[r] > 0
        expected = probs[r][live].double()
        result = stats.chisquare(counts[live].numpy(), (expected / expected.sum() * draws).numpy())
        assert result.pvalue > 1e-3, (r, result)
    again, _ = categorical_sample(rows[:100], generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, tokens[:100])


def test_gumbel_softmax_soft_and_straight_through():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(0), requires_grad=True)
    soft = gumbel_softmax(logits, 0.7, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(soft.sum(-1), torch.ones(4))
    assert (soft > 0).all() and (soft < 1).all()
    hard = gumbel_softmax(logits, 0.7, hard=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(soft.argmax(-1), 9).float())
    # straight-through: the gradient is the soft sample's gradient
    w = torch.randn(4, 9)
    (g_hard,) = torch.autograd.grad((hard * w).sum(), logits)
    (g_soft,) = torch.autograd.grad((soft * w).sum(), logits)
    assert torch.allclose(g_hard, g_soft, atol=1e-6)
    # without noise, hard is the argmax of the logits
    greedy = gumbel_softmax(logits, 0.5, hard=True, noise=False)
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1))
    # inputs are not modified in place
    before = logits.detach().clone()
    gumbel_softmax(logits, 1.0, hard=True)
    assert torch.equal(logits.detach(), before)


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_gumbel_softmax_rejects_non_positive_tau(tau):
    with pytest.raises(ValueError, match="tau > 0"):
        gumbel_softmax(torch.zeros(2, 3), tau)


@pytest.mark.parametrize("family", FAMILIES)
def test_soft_embed_one_hot_equals_token_ids(family, make_model, tokenizer, source_batch):
    """With one-hot inputs the model must produce the logits of the token ids: the embedding scale
    is right for the family on both sides."""
    model = make_model(family, warm=False)
    vocab = model.config.vocab_size
    dec_ids = tokenizer(["the bank of peru signs", "a", "japan army", "x y"], return_tensors="pt", padding=True).input_ids
    ref = model(**source_batch, decoder_input_ids=dec_ids).logits
    dec_emb = soft_embed(model, torch.nn.functional.one_hot(dec_ids, vocab).float())
    out = model(**source_batch, decoder_inputs_embeds=dec_emb).logits
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
    enc_emb = soft_embed(model, torch.nn.functional.one_hot(source_batch.input_ids, vocab).float(), side="encoder")
    out = model(inputs_embeds=enc_emb, attention_mask=source_batch.attention_mask, decoder_input_ids=dec_ids).logits
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_soft_embed_is_differentiable_and_checks_vocab(make_model):
    model = make_model("bart", warm=False)
    vocab = model.config.vocab_size
    probs = torch.softmax(torch.randn(2, 3, vocab), -1).requires_grad_()
    emb = soft_embed(model, probs)
    assert emb.shape == (2, 3, model.config.d_model)
    emb.sum().backward()
    assert probs.grad is not None and probs.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=rf"last dimension is {vocab - 1} but the model's decoder embedding has {vocab} rows"):
        soft_embed(model, torch.zeros(2, vocab - 1))
    with pytest.raises(ValueError, match="side must be"):
        soft_embed(model, probs, side="middle")


def test_categorical_sample_with_given_uniforms_equals_drawing_them():
    scores = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    drawn, lse = categorical_sample(scores, generator=torch.Generator().manual_seed(3))
    uniform = torch.rand((6, 1), generator=torch.Generator().manual_seed(3))
    given, lse2 = categorical_sample(scores, uniform=uniform)
    assert torch.equal(drawn, given) and torch.equal(lse, lse2)


@pytest.mark.parametrize("hard", [True, False], ids=["one-hot", "soft"])
def test_deferred_vocab_gradients_equal_the_per_step_products(hard):
    """DeferredVocabGradients: the embedding's and a LM head's weight gradients over several steps, computed once
    (one product, or an index_add for one-hot inputs), equal the per-step products; the inputs' gradients too."""
    from hf_seqgan.sampling import DeferredVocabGradients

    g = torch.Generator().manual_seed(0)
    vocab, hidden, rows, steps = 40, 8, 3, 4
    weight = torch.randn(vocab, hidden, generator=g, requires_grad=True)
    logits = torch.randn(steps, rows, vocab, generator=g, requires_grad=True)
    grads = {}
    for deferred in (None, DeferredVocabGradients()):
        x, outputs = torch.zeros(rows, hidden), []
        for t in range(steps):
            soft = gumbel_softmax(logits[t] + x @ weight.t(), hard=hard, noise=False)  # (R, V): its own LM head product
            index = soft.argmax(-1) if hard else None
            x = soft @ weight if deferred is None else deferred.embed(soft, weight, index)  # the same product, its weight gradient deferred
            outputs.append(x)
        loss = torch.stack(outputs).pow(2).sum()
        grads[deferred is None] = torch.autograd.grad(loss, (weight, logits))
    for per_step, once in zip(grads[True], grads[False]):
        torch.testing.assert_close(once, per_step, rtol=1e-5, atol=1e-6)
