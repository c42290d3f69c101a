import copy
import inspect
import logging
import re
import warnings

import pytest
import torch
from transformers import (
    BartConfig,
    BartForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessorList,
    SuppressTokensLogitsProcessor,
)

from hf_seqgan.logits_process import GumbelSamplingLogitsProcessor
from hf_seqgan.rollout import RolloutEngine
from hf_seqgan.sampling import soft_embed
from tests.conftest import FAMILIES

MAX_NEW = 14
FREE, NEVER = -1, -2


class EndRows:
    """A processor that builds the EOS preconditions instead of hoping a tiny model meets them: row r
    ends at generated step ``at[r]`` (its EOS score raised above all others from there on, unless
    something blocked EOS with -inf, e.g. ``min_new_tokens``); ``NEVER`` rows cannot end (EOS -inf);
    ``FREE`` rows are left to the model. Pure: the step is read from ``input_ids``."""

    def __init__(self, eos, at):
        self.eos, self.at = eos, torch.tensor(at)

    def __call__(self, input_ids, scores):
        step = input_ids.shape[-1] - 1  # the index of the token being generated
        col = scores[:, self.eos]  # (R,)
        end = (self.at >= 0) & (step >= self.at) & (col > float("-inf"))
        col = torch.where(end, scores.amax(-1) + 1e3, torch.where(self.at == NEVER, float("-inf"), col))
        out = scores.clone()
        out[:, self.eos] = col
        return out


class Flat:
    """A processor that makes every token equally likely: samples that depend on the seed only."""

    def __call__(self, input_ids, scores):
        return torch.zeros_like(scores)


def _teacher_forced_logits(model, batch, sequences, start_id):
    """An independent reference: one plain forward pass over start + sequences[:-1]."""
    dec_in = torch.cat([torch.full_like(sequences[:, :1], start_id), sequences[:, :-1]], dim=1)
    return model(**batch, decoder_input_ids=dec_in).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_generate_and_logprobs_equal_teacher_forcing(family, make_model, tokenizer, source_batch):
    model = make_model(family)
    engine = RolloutEngine(model, tokenizer)
    eos, end_at = tokenizer.eos_token_id, 3
    # built, not hoped for: row 0 ends by step 3, row 1 runs to the limit, rows 2-3 are the model's own, so the
    # padding after EOS next to a row still decoding is exercised on every family and transformers version
    ends = LogitsProcessorList([EndRows(eos, [end_at, NEVER, FREE, FREE])])
    with torch.no_grad():
        ref = model.generate(**source_batch, do_sample=False, max_new_tokens=MAX_NEW, logits_processor=ends)
    out = engine.sample(**source_batch, do_sample=False, max_new_tokens=MAX_NEW, logits_processor=ends)
    assert torch.equal(out.sequences, ref[:, 1:]), (out.sequences, ref)
    assert out.lengths[0] <= end_at + 1 and out.lengths[1] == MAX_NEW == out.sequences.shape[1], out.lengths
    for row, mask in zip(out.sequences, out.attention_mask):
        n = int(mask.sum())
        assert (row[n:] == tokenizer.pad_token_id).all()
        assert (row[: n - 1] != eos).all()
    with torch.no_grad():
        logits = _teacher_forced_logits(model, source_batch, out.sequences, engine.decoder_start_token_id)
    logp = torch.log_softmax(logits, -1)
    tf = logp.gather(-1, out.sequences[..., None]).squeeze(-1) * out.attention_mask
    assert torch.allclose(out.logprobs, tf, atol=1e-5), (out.logprobs - tf).abs().max()
    # greedy: the processed distribution is the model's, so both log-prob views agree, except where a processor forces a
    # token (mBART's language code, row 0's EOS: probability 1) or removes EOS (row 1: renormalised without it)
    forced = torch.zeros_like(out.attention_mask, dtype=torch.bool)
    forced[0, end_at:] = True
    if model.generation_config.forced_bos_token_id is not None:
        assert (out.sequences[:, 0] == model.generation_config.forced_bos_token_id).all()
        forced[:, 0] = True
    assert torch.allclose(out.sample_logprobs[forced], torch.zeros(int(forced.sum())), atol=1e-6)
    without_eos = (tf[1] - torch.log1p(-logp[1, :, eos].exp())) * out.attention_mask[1]
    assert torch.allclose(out.sample_logprobs[1][~forced[1]], without_eos[~forced[1]], atol=1e-5)
    free = ~forced
    free[1] = False
    assert torch.allclose(out.sample_logprobs[free], out.logprobs[free], atol=1e-5)
    # the engine's own teacher-forced scorer agrees too
    scored = engine.score(**source_batch, sequences=out.sequences)
    assert torch.allclose(scored.logprobs, tf, atol=1e-5)
    # every row ends early: the decode stops where generate() stops
    ends = LogitsProcessorList([EndRows(eos, [2, 4, 3, 5])])
    with torch.no_grad():
        ref = model.generate(**source_batch, do_sample=False, max_new_tokens=MAX_NEW, logits_processor=ends)
    out = engine.sample(**source_batch, do_sample=False, max_new_tokens=MAX_NEW, logits_processor=ends)
    assert torch.equal(out.sequences, ref[:, 1:]) and out.sequences.shape[1] <= 6 and (out.lengths <= torch.tensor([3, 5, 4, 6])).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_straight_through_decode_matches_teacher_forcing_and_backpropagates(family, make_model, tokenizer, source_batch):
    model = make_model(family)
    engine = RolloutEngine(model, tokenizer)
    out = engine.differentiable(
        **source_batch, max_new_tokens=10, tau=0.8, hard=True, generator=torch.Generator().manual_seed(0), output_hidden_states=True
    )
    assert out.logits.requires_grad and out.soft_tokens.requires_grad
    assert torch.equal(out.soft_tokens.detach().argmax(-1), out.sequences)
    ref = _teacher_forced_logits(model, source_batch, out.sequences, engine.decoder_start_token_id)
    mask = out.attention_mask.bool()
    assert torch.allclose(out.logits[mask], ref[mask], atol=1e-4, rtol=1e-4), (out.logits[mask] - ref[mask]).abs().max()
    with torch.no_grad():
        states = model(**source_batch, decoder_input_ids=torch.cat(
            [torch.full_like(out.sequences[:, :1], engine.decoder_start_token_id), out.sequences[:, :-1]], 1
        ), output_hidden_states=True).decoder_hidden_states[-1]
    assert torch.allclose(out.hidden_states[0][mask], states[mask], atol=1e-4)
    loss = -(out.logprobs.sum()) + out.hidden_states[0].pow(2).mean()
    loss.backward()
    enc_grads = [p.grad for n, p in model.named_parameters() if ".encoder." in f".{n}" and "layer" in n and p.grad is not None]
    dec_grads = [p.grad for n, p in model.named_parameters() if ".decoder." in f".{n}" and "layer" in n and p.grad is not None]
    assert enc_grads and any(g.abs().sum() > 0 for g in enc_grads), "no gradient reached the encoder"
    assert dec_grads and any(g.abs().sum() > 0 for g in dec_grads), "no gradient reached the decoder"


def test_gradient_flows_through_soft_inputs(make_model, tokenizer, source_batch):
    """The fed-back distributions are in the graph: the logits at step 2 depend on the soft input
    built from step 0's and step 1's distributions."""
    model = make_model("marian")
    engine = RolloutEngine(model, tokenizer)
    soft_embed(model, torch.zeros(1, model.config.vocab_size))  # the embedding-scale check runs once, before the hook
    fed = []
    hook = model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs.get("inputs_embeds")), with_kwargs=True
    )
    try:
        out = engine.differentiable(**source_batch, max_new_tokens=4, tau=1.0, hard=False, noise=False, min_new_tokens=4)
    finally:
        hook.remove()
    assert torch.allclose(out.soft_tokens.sum(-1), torch.ones(out.soft_tokens.shape[:2]))
    assert fed[0] is None and all(e is not None and e.requires_grad for e in fed[1:])
    (grad,) = torch.autograd.grad(out.logits[:, 2].sum(), fed[1])
    assert grad.abs().sum() > 0


def test_sampling_is_reproducible_and_batched_with_num_samples(make_model, tokenizer, source_batch):
    engine = RolloutEngine(make_model("t5"), tokenizer)
    a = engine.sample(**source_batch, max_new_tokens=MAX_NEW, num_samples=3, generator=torch.Generator().manual_seed(7))
    b = engine.sample(**source_batch, max_new_tokens=MAX_NEW, num_samples=3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.logprobs, b.logprobs)
    # another seed gives other samples: shown on a flat distribution, where that holds whatever the model emits
    flat = LogitsProcessorList([Flat()])
    c7, c8 = (engine.sample(**source_batch, max_new_tokens=MAX_NEW, logits_processor=flat, generator=torch.Generator().manual_seed(seed))
              for seed in (7, 8))
    assert not torch.equal(c7.sequences[:, :1], c8.sequences[:, :1])
    assert a.sequences.shape[0] == 12
    assert torch.equal(a.source_index, torch.arange(4).repeat_interleave(3))
    # each sample's log-probs are those of a teacher-forced pass on its own source
    scored = engine.score(**source_batch, sequences=a.sequences, sequence_mask=a.attention_mask, source_index=a.source_index)
    assert torch.allclose(scored.logprobs, a.logprobs, atol=1e-5)


def test_top_k_one_is_greedy_and_processors_apply(make_model, tokenizer, source_batch):
    engine = RolloutEngine(make_model("bart"), tokenizer)
    greedy = engine.sample(**source_batch, do_sample=False, max_new_tokens=MAX_NEW)
    topk1 = engine.sample(**source_batch, top_k=1, max_new_tokens=MAX_NEW, generator=torch.Generator().manual_seed(0))
    assert torch.equal(greedy.sequences, topk1.sequences)
    banned = int(greedy.sequences[0, 0])
    procs = LogitsProcessorList([SuppressTokensLogitsProcessor([banned])])
    out = engine.sample(**source_batch, max_new_tokens=MAX_NEW, logits_processor=procs, num_samples=4, generator=torch.Generator().manual_seed(0))
    assert not (out.sequences == banned).any()
    # temperature changes the sampling distribution's log-probs but not the model's
    hot = engine.sample(**source_batch, max_new_tokens=MAX_NEW, temperature=2.0, generator=torch.Generator().manual_seed(0))
    m = hot.attention_mask.bool()
    assert not torch.allclose(hot.sample_logprobs[m], hot.logprobs[m])
    tf = engine.score(**source_batch, sequences=hot.sequences, sequence_mask=hot.attention_mask)
    assert torch.allclose(tf.logprobs, hot.logprobs, atol=1e-5)


def test_min_and_max_new_tokens(make_model, tokenizer, source_batch):
    model = make_model("pegasus")
    engine = RolloutEngine(model, tokenizer)
    eos = tokenizer.eos_token_id
    ends = LogitsProcessorList([EndRows(eos, [2, FREE, FREE, FREE])])  # a row that stops early, built
    free = engine.sample(**source_batch, do_sample=False, max_new_tokens=MAX_NEW, logits_processor=ends)
    assert free.lengths[0] <= 3
    m = 5
    out = engine.sample(**source_batch, do_sample=False, max_new_tokens=MAX_NEW, min_new_tokens=m, logits_processor=ends)
    assert int(out.lengths[0]) == m + 1  # EOS blocked at steps 0..m-1, then row 0's EOS at step m
    assert (out.lengths >= m + 1).all() and not (out.sequences[:, :m] == eos).any()
    with torch.no_grad():
        ref = model.generate(**source_batch, do_sample=False, max_new_tokens=MAX_NEW, min_new_tokens=m, logits_processor=ends)
    assert torch.equal(out.sequences, ref[:, 1:])
    short = engine.sample(**source_batch, max_new_tokens=3, generator=torch.Generator().manual_seed(0))
    assert short.sequences.shape[1] <= 3


def test_forced_positions_are_taken_and_decoding_continues_from_them(make_model, tokenizer, source_batch):
    engine = RolloutEngine(make_model("mbart"), tokenizer)
    gold = tokenizer(["japan army signs deal", "peru bank", "x", "kenya team signs"], return_tensors="pt", padding=True).input_ids
    mask = torch.zeros_like(gold, dtype=torch.bool)
    mask[:, 0] = True
    mask[:, 2] = True
    eos = tokenizer.eos_token_id
    assert (gold[:, 0] != eos).all()
    # min_new_tokens=3: the unforced position 1 cannot end a row, so position 2 is reached on every row
    out = engine.sample(**source_batch, do_sample=False, max_new_tokens=gold.shape[1], min_new_tokens=3, forced_tokens=gold, forced_mask=mask)
    seq = out.sequences
    assert out.attention_mask[:, :3].all()
    assert torch.equal(seq[:, 0], gold[:, 0]) and torch.equal(seq[:, 2], gold[:, 2])
    # the unforced position 1 is the greedy choice (EOS blocked) given the forced position 0
    with torch.no_grad():
        logits = _teacher_forced_logits(engine.model, source_batch, seq, engine.decoder_start_token_id)
    assert torch.equal(seq[:, 1], logits[:, 1].index_fill(-1, torch.tensor([eos]), float("-inf")).argmax(-1))
    with pytest.raises(ValueError, match="forced_tokens and forced_mask"):
        engine.sample(**source_batch, max_new_tokens=4, forced_tokens=gold)


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_continue_from_prefixes(family, make_model, tokenizer, source_batch):
    model = make_model(family)
    engine = RolloutEngine(model, tokenizer)
    # no EOS in the first 4 tokens: the prefixes of length <= 4 checked below are all continued
    sampled = engine.sample(**source_batch, max_new_tokens=10, min_new_tokens=4, generator=torch.Generator().manual_seed(1))
    P = sampled.sequences.shape[1]
    assert P >= 5
    # greedy continuation of every prefix, all in one decode, equals generate() from that prefix
    cont = engine.continue_from(**source_batch, prefixes=sampled.sequences, max_length=P, do_sample=False)
    assert cont.sequences.shape[0] == 4 * P
    assert torch.equal(cont.source_index, torch.arange(4).repeat_interleave(P))
    assert torch.equal(cont.prefix_lengths, torch.arange(1, P + 1).repeat(4))
    checked = 0
    for row in [0, 3, P + 1, 3 * P + 2, 4 * P - 1]:
        b, k = row // P, row % P + 1
        prefix = sampled.sequences[b : b + 1, :k]
        dec = torch.cat([torch.full_like(prefix[:, :1], engine.decoder_start_token_id), prefix], 1)
        if (prefix == tokenizer.eos_token_id).any():
            continue
        checked += 1
        with torch.no_grad():
            ref = model.generate(
                input_ids=source_batch.input_ids[b : b + 1], attention_mask=source_batch.attention_mask[b : b + 1],
                decoder_input_ids=dec, do_sample=False, max_new_tokens=P - k,
            )[0, 1:] if k < P else prefix[0]
        n = int(cont.attention_mask[row].sum())
        assert torch.equal(cont.sequences[row, :n], ref[:n]), (row, cont.sequences[row], ref)
    assert checked >= 4
    # the full-length prefix is the sampled sequence itself, with its own log-probs
    full = torch.arange(P - 1, 4 * P, P)
    assert torch.equal(cont.sequences[full][:, :P], sampled.sequences)
    assert torch.allclose(cont.logprobs[full][:, :P], sampled.logprobs, atol=1e-5)
    # N samples per prefix, rows ordered (source, prefix, sample); prefixes copied verbatim
    mc = engine.continue_from(**source_batch, prefixes=sampled.sequences, prefix_lengths=torch.tensor([1, 3]), num_samples=5,
                              max_length=P, generator=torch.Generator().manual_seed(0))
    assert mc.sequences.shape[0] == 4 * 2 * 5
    rows3 = mc.prefix_lengths == 3
    assert torch.equal(mc.sequences[rows3][:, :3], sampled.sequences[mc.source_index[rows3], :3])
    with pytest.raises(ValueError, match="prefix_lengths must lie in"):
        engine.continue_from(**source_batch, prefixes=sampled.sequences, prefix_lengths=torch.tensor([P + 1]), max_length=P)


def test_lora_wrapped_model(make_model, tokenizer, source_batch):
    from peft import LoraConfig, get_peft_model

    model = make_model("bart")
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, init_lora_weights=False))
    engine = RolloutEngine(peft_model, tokenizer)
    with torch.no_grad():
        ref = peft_model.generate(**source_batch, do_sample=False, max_new_tokens=MAX_NEW)
    out = engine.sample(**source_batch, do_sample=False, max_new_tokens=MAX_NEW)
    assert torch.equal(out.sequences, ref[:, 1:])
    soft = engine.differentiable(**source_batch, max_new_tokens=6, tau=1.0, generator=torch.Generator().manual_seed(0))
    soft.logprobs.sum().backward()
    lora_grads = [p.grad for n, p in peft_model.named_parameters() if "lora_" in n and p.requires_grad]
    assert lora_grads and all(g is not None for g in lora_grads) and any(g.abs().sum() > 0 for g in lora_grads)


def test_clear_errors(make_model, tokenizer, source_batch):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(tokenizer)))
    with pytest.raises(ValueError, match="GPT2LMHeadModel is not an encoder-decoder model"):
        RolloutEngine(gpt2)
    clf = BartForSequenceClassification(BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                                                   encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16))
    with pytest.raises(ValueError, match="no language-modelling head"):
        RolloutEngine(clf)
    model = make_model("bart", warm=False)
    tok = copy.deepcopy(tokenizer)
    tok.pad_token = None
    assert tok.pad_token_id is None
    with pytest.raises(ValueError, match="has no pad token"):
        RolloutEngine(model, tok)
    engine = RolloutEngine(model, tokenizer)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
            engine.sample(**source_batch, max_new_tokens=bad)
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        engine.continue_from(**source_batch, prefixes=source_batch.input_ids, max_length=0)
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):  # 0 is not greedy here: do_sample=False is
        with pytest.raises(ValueError, match="temperature must be a finite number > 0.*do_sample=False"):
            engine.sample(**source_batch, max_new_tokens=4, temperature=bad)
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            engine.continue_from(**source_batch, prefixes=source_batch.input_ids, temperature=bad)
        with pytest.raises(ValueError, match="tau must be a finite number > 0"):
            engine.differentiable(**source_batch, max_new_tokens=4, tau=bad)
    # an attention mask that does not fit the ids names both shapes
    for mask in (source_batch.attention_mask[:3], source_batch.attention_mask[:, :-1]):
        with pytest.raises(ValueError, match=re.escape(f"attention_mask has shape {tuple(mask.shape)} but input_ids has shape (4, ")):
            engine.sample(source_batch.input_ids, mask, max_new_tokens=4)
        with pytest.raises(ValueError, match="attention_mask has shape"):
            engine.encode(source_batch.input_ids, mask)
    # the Gumbel processor the engine would misuse: beam search (none here), or noise on top of sampling
    with pytest.raises(ValueError, match=r"stochastic beam search.*generate_kwargs"):
        engine.sample(**source_batch, max_new_tokens=4, do_sample=False, logits_processor=LogitsProcessorList([GumbelSamplingLogitsProcessor(num_beams=2)]))
    with pytest.raises(ValueError, match="drawn twice.*do_sample=False"):
        engine.sample(**source_batch, max_new_tokens=4, logits_processor=LogitsProcessorList([GumbelSamplingLogitsProcessor(seed=0)]))
    with pytest.raises(ValueError, match="drawn twice"):
        engine.differentiable(**source_batch, max_new_tokens=4, logits_processor=LogitsProcessorList([GumbelSamplingLogitsProcessor(seed=0)]))
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        engine.sample(**source_batch, max_new_tokens=4, num_samples=0)
    with pytest.raises(ValueError, match="min_new_tokens=9 exceeds max_new_tokens=4"):
        engine.sample(**source_batch, max_new_tokens=4, min_new_tokens=9)
    with pytest.raises(ValueError, match="Pass max_new_tokens"):
        engine.sample(**source_batch)
    model.gradient_checkpointing_enable()
    model.train()
    with pytest.raises(ValueError, match="Gradient checkpointing"):
        engine.differentiable(**source_batch, max_new_tokens=4)


def test_decode_passes_the_cache_under_its_current_name(make_model, tokenizer, source_batch):
    """No "`past_key_values` ... deprecated" warning from the engine's own decoder calls: it passes and reads the
    cache under the name the installed transformers' forward takes (``cache`` where it was renamed)."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache
    from transformers.utils import logging as hf_logging

    model = make_model("bart")
    engine = RolloutEngine(model, tokenizer)
    renamed = "cache" in inspect.signature(type(model).forward).parameters
    messages = []

    class Grab(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    def deprecations(run):
        messages.clear()
        hf_logging.warning_once.cache_clear()  # transformers says it once per process
        handler = Grab(level=logging.WARNING)
        hf_logging.get_logger().addHandler(handler)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run()
        finally:
            hf_logging.get_logger().removeHandler(handler)
        return [m for m in messages + [str(w.message) for w in caught] if "deprecated" in m and ("past_key_values" in m or "cache" in m)]

    def decode():
        engine.sample(**source_batch, max_new_tokens=4, generator=torch.Generator().manual_seed(0))
        engine.differentiable(**source_batch, max_new_tokens=3, generator=torch.Generator().manual_seed(0))
        engine.continue_from(**source_batch, prefixes=source_batch.input_ids[:, :2], do_sample=False)

    assert deprecations(decode) == []
    if renamed:  # the check has power: the old name does warn on this version
        def old_name():
            with torch.no_grad():
                out = model(**source_batch, decoder_input_ids=source_batch.input_ids[:, :1], use_cache=True,
                            past_key_values=EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config)))
            return out.past_key_values

        assert deprecations(old_name)


def _expanded_continuation(engine, enc, prefixes, lengths, source_index, steps, **sampling):
    """The code the branched continuation replaced: every row expanded, its prefix forced, decoded from the start."""
    forced_mask = torch.arange(prefixes.shape[1])[None, :] < lengths[:, None]
    return engine.sample(encoded=enc.select(source_index), forced_tokens=prefixes[source_index], forced_mask=forced_mask,
                         max_new_tokens=steps, **sampling)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sampling", [dict(do_sample=False), dict(), dict(temperature=0.7, top_k=20), "processor", "gather"],
                         ids=["greedy", "sample", "top-k", "processor", "gathered cross K/V"])
def test_branched_continuation_equals_the_expanded_decode(family, sampling, make_model, tokenizer, source_batch, monkeypatch):
    """continue_from decodes each prefix only once (one teacher-forced pass, continuations branched from its cache, one
    growing batch) and draws one uniform per row and step in the old row order: the same tokens, masks and log-probs
    as forcing every prefix on expanded rows, under the same seed; prefixes with an EOS (row 1 ends at step 2), a
    prefix of length 0 and the full one, and max_length beyond the prefixes included."""
    engine = RolloutEngine(make_model(family), tokenizer)
    enc = engine.encode(**source_batch)
    ends = LogitsProcessorList([EndRows(tokenizer.eos_token_id, [FREE, 2, NEVER, NEVER])])
    with torch.no_grad():
        sampled = engine.sample(encoded=enc, max_new_tokens=6, logits_processor=ends, generator=torch.Generator().manual_seed(1))
    assert sampled.attention_mask[1].sum() == 3 and sampled.sequences.shape[1] == 6
    if sampling == "gather":  # cross-attention K/V kept once per source, gathered at every step
        sampling = {}
        monkeypatch.setattr(RolloutEngine, "copy_cross_attention", False)
    if sampling == "processor":  # a row-wise processor from the generation config, on the history of each row
        sampling = {}
        engine.base.generation_config.no_repeat_ngram_size = 2
    try:
        lengths_k = torch.tensor([0, 1, 3, 6])
        new = engine.continue_from(encoded=enc, prefixes=sampled.sequences, prefix_lengths=lengths_k, num_samples=3, max_length=9,
                                   generator=torch.Generator().manual_seed(5), **sampling)
        ref = _expanded_continuation(engine, enc, sampled.sequences, new.prefix_lengths, new.source_index, 9,
                                     generator=torch.Generator().manual_seed(5), **sampling)
    finally:
        engine.base.generation_config.no_repeat_ngram_size = None
    assert torch.equal(new.sequences, ref.sequences)
    assert torch.equal(new.attention_mask, ref.attention_mask)
    torch.testing.assert_close(new.logprobs, ref.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(new.sample_logprobs, ref.sample_logprobs, atol=1e-5, rtol=0)
    assert len(set(map(tuple, new.sequences[new.prefix_lengths == 1].tolist()))) > 1 or sampling.get("do_sample") is False


def test_branched_continuation_shares_cross_attention_and_skips_prefixes(make_model, tokenizer, source_batch):
    """The decoder runs on continuation rows only (the batch grows from the shortest prefix), and the
    cross-attention K/V each call reads are those of the sources (no per-row projection)."""
    model = make_model("bart")
    engine = RolloutEngine(model, tokenizer)
    enc = engine.encode(**source_batch)
    with torch.no_grad():
        sampled = engine.sample(encoded=enc, max_new_tokens=6, min_new_tokens=6, generator=torch.Generator().manual_seed(1))
    rows = []
    hook = model.get_decoder().register_forward_pre_hook(lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape), with_kwargs=True)
    projected = []
    k_proj = model.get_decoder().layers[0].encoder_attn.k_proj
    hook2 = k_proj.register_forward_hook(lambda module, args, output: projected.append(args[0].shape[0]))
    try:
        engine.continue_from(encoded=enc, prefixes=sampled.sequences, prefix_lengths=torch.tensor([2, 4]), num_samples=2, max_length=6)
    finally:
        hook.remove(), hook2.remove()
    # one teacher-forced pass over the 4 sources (start + 4 forced tokens), then 3 + 4 ... rows: 8 rows from step 3, 16 from step 5
    assert rows[0] == (4, 5)
    assert [r[0] for r in rows[1:]] == [8, 8, 16] and all(r[1] == 1 for r in rows[1:])
    assert projected == [4]  # the cross-attention keys projected once, for the 4 sources


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("hard", [True, False], ids=["straight-through", "soft"])
def test_differentiable_decode_defers_vocab_gradients_exactly(family, hard, make_model, tokenizer, source_batch):
    """The differentiable decode computes the embedding's and the LM head's weight gradients once over all
    steps (straight-through inputs looked up): every parameter's gradient equals the per-step code's
    (``defer_vocab_gradients=False``) within float tolerance, and so do the tokens and logits."""
    model = make_model(family).train()
    results = {}
    for defer in (False, True):
        engine = RolloutEngine(model, tokenizer)
        engine.defer_vocab_gradients = defer
        model.zero_grad(set_to_none=True)
        out = engine.differentiable(**source_batch, max_new_tokens=6, hard=hard, generator=torch.Generator().manual_seed(3),
                                    output_hidden_states=True)
        weights = torch.linspace(0, 1, out.soft_tokens.shape[-1])
        (out.logprobs.sum() + out.hidden_states[0].pow(2).mean() + (out.soft_tokens * weights).sum()).backward()
        results[defer] = (out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert "forward" not in vars(model.get_output_embeddings())  # the LM head is restored
    (ref, ref_grads), (new, new_grads) = results[False], results[True]
    assert torch.equal(ref.sequences, new.sequences)
    torch.testing.assert_close(new.logits, ref.logits, rtol=1e-4, atol=1e-5)
    assert set(new_grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(new_grads[name], grad, rtol=1e-4, atol=1e-6 * float(grad.abs().max()) + 1e-8, msg=name)
