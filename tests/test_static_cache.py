"""The preallocated (static) KV cache and the compiled decode steps of `RolloutEngine.sample`:
tested exact against the default dynamic cache (same tokens under the same seed, same log-probs)."""

import logging

import pytest
import torch

from hf_seqgan.rollout import RolloutEngine
from tests.conftest import FAMILIES

STEPS = 12


def _sample(engine, batch, **kwargs):
    return engine.sample(**batch, max_new_tokens=STEPS, generator=torch.Generator().manual_seed(3), **kwargs)


def _assert_same(a, b, atol=1e-5):
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.attention_mask, b.attention_mask)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=atol, rtol=1e-4)
    torch.testing.assert_close(a.sample_logprobs, b.sample_logprobs, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_static_cache_samples_the_tokens_of_the_dynamic_cache(family, make_model, source_batch):
    model = make_model(family)
    dynamic, static = RolloutEngine(model), RolloutEngine(model, cache_implementation="static")
    assert static.cache_implementation == "static" and dynamic.cache_implementation == "dynamic"
    for kwargs in ({}, {"temperature": 0.7, "num_samples": 3}, {"do_sample": False}, {"min_new_tokens": 4, "top_k": 20},
                   {"output_hidden_states": True, "output_logits": True}):
        a, b = _sample(dynamic, source_batch, **kwargs), _sample(static, source_batch, **kwargs)
        _assert_same(a, b)
        if kwargs.get("output_logits"):
            torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(a.hidden_states[0], b.hidden_states[0], atol=1e-5, rtol=1e-4)
    # a decode whose rows all end early stops early with the static cache too
    forced = torch.full((source_batch["input_ids"].shape[0], 3), model.generation_config.eos_token_id)
    mask = torch.zeros_like(forced, dtype=torch.bool)
    mask[:, 2] = True
    a = _sample(dynamic, source_batch, forced_tokens=forced, forced_mask=mask)
    b = _sample(static, source_batch, forced_tokens=forced, forced_mask=mask)
    assert a.sequences.shape[1] == 3
    _assert_same(a, b)


def test_static_cache_is_read_from_the_generation_config_and_left_out_of_differentiable_decoding(make_model, source_batch):
    model = make_model("bart")
    model.generation_config.cache_implementation = "static"
    engine = RolloutEngine(model)
    assert engine.cache_implementation == "static"
    assert RolloutEngine(model, use_generation_config=False).cache_implementation == "dynamic"
    assert RolloutEngine(model, cache_implementation="dynamic").cache_implementation == "dynamic"
    # the differentiable mode keeps the graph through an out-of-place (dynamic) cache, and trains
    out = engine.differentiable(**source_batch, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    ref = RolloutEngine(model, cache_implementation="dynamic").differentiable(**source_batch, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.sequences, ref.sequences)
    out.logprobs.sum().backward()
    assert model.lm_head.weight.grad is not None or model.get_input_embeddings().weight.grad is not None


def test_cache_and_compile_options_are_checked(make_model, caplog):
    model = make_model("t5")
    with pytest.raises(ValueError, match="cache_implementation must be 'dynamic' or 'static'"):
        RolloutEngine(model, cache_implementation="offloaded")
    with pytest.raises(ValueError, match="compile=True needs cache_implementation='static'"):
        RolloutEngine(model, compile=True)
    with pytest.raises(ValueError, match="compile must be True or False"):
        RolloutEngine(model, cache_implementation="static", compile="yes")
    model.generation_config.cache_implementation = "offloaded"
    with caplog.at_level(logging.WARNING, logger="hf_seqgan.rollout"):
        assert RolloutEngine(model).cache_implementation == "dynamic"
    assert "cache_implementation='offloaded'" in caplog.text


def test_compiled_steps_sample_the_tokens_of_the_eager_engine(make_model, source_batch):
    pytest.importorskip("torch._inductor")
    model = make_model("t5")
    eager = RolloutEngine(model)
    compiled = RolloutEngine(model, cache_implementation="static", compile=True)
    for kwargs in ({}, {"do_sample": False}):
        _assert_same(_sample(eager, source_batch, **kwargs), _sample(compiled, source_batch, **kwargs), atol=1e-4)
    assert compiled._compiled_model is not None
