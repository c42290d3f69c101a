"""Seq2SeqDiscriminator (a discriminator built from the generator) and train_discriminator.

What they promise: residual heads start at 0; every input path (ids, ids as generate() returns them,
texts, encode_ids + forward, soft one-hots) gives the same logits; the last target token counts;
the source counts only when conditional; the generator is copied, its frozen reference never
trains; save/load is exact; it drops into AdversarialTrainer (REINFORCE and Gumbel); the training
loop reaches a target held-out accuracy on a separable case and warns at chance on an inseparable
one.
"""

import copy
import warnings

import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from hf_seqgan.discriminators import SequenceDiscriminator, build_default_discriminator
from hf_seqgan.rollout import RolloutEngine
from hf_seqgan.seq2seq_discriminator import CHANCE_WARNING, HEADS, Seq2SeqDiscriminator, heldout_metrics, train_discriminator

FAMILIES = ("bart", "t5", "marian")
SOURCES = ["the bank of peru signed a deal .", "a team of kenya", "the army of japan won on monday ."]
TARGETS = ["peru bank signs deal", "kenya team", "japan army wins"]


def _perturb(disc, seed=0, scale=0.05):
    """Move every trainable weight a little (a residual head starts at 0, the ratio head's trunk equals its reference)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in disc.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g))
    return disc


def _batch(tokenizer):
    src = tokenizer(SOURCES, return_tensors="pt", padding=True).input_ids
    tgt = tokenizer(text_target=TARGETS, return_tensors="pt", padding=True).input_ids
    return src, tgt


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", HEADS)
def test_residual_start_and_every_token_counts(family, head, make_model, tokenizer):
    src, tgt = _batch(tokenizer)
    disc = Seq2SeqDiscriminator(make_model(family, warm=False), tokenizer, head=head, residual=True).eval()
    assert torch.allclose(disc.logits_from_ids(tgt, src), torch.zeros(3, 1), atol=1e-5)  # the ratio head: trunk = reference, up to float noise
    assert torch.allclose(disc.score_ids(tgt, src, label="real").exp(), torch.full((3,), 0.5), atol=1e-5)
    _perturb(disc)
    base = disc.logits_from_ids(tgt, src)
    last = (tgt != tokenizer.pad_token_id).sum(-1) - 2  # the last content token, before EOS
    changed = tgt.clone()
    changed[torch.arange(3), last] = (changed[torch.arange(3), last] + 7) % len(tokenizer)
    assert (disc.logits_from_ids(changed, src) - base).abs().min() > 1e-6
    assert torch.allclose(disc.log_probs(base).exp().sum(-1), torch.ones(3))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_input_path_gives_the_same_logits(family, make_model, tokenizer):
    src, tgt = _batch(tokenizer)
    disc = _perturb(Seq2SeqDiscriminator(make_model(family, warm=False), tokenizer, head="token")).eval()
    ref = disc.logits_from_ids(tgt, src)
    start = torch.full_like(tgt[:, :1], disc.decoder_start_token_id)
    assert torch.allclose(disc.logits_from_ids(torch.cat([start, tgt], 1), src), ref, atol=1e-6)  # as generate() returns ids
    padded = F.pad(tgt, (0, 3), value=tokenizer.pad_token_id)
    assert torch.allclose(disc.logits_from_ids(padded.masked_fill(padded == tokenizer.pad_token_id, -100), src), ref, atol=1e-5)
    assert torch.allclose(disc(**disc.encode_ids(tgt, src)), ref)
    assert torch.allclose(disc.logits_from_texts(TARGETS, SOURCES), ref, atol=1e-6)
    index = torch.tensor([2, 0])  # source_index picks the source of each row
    assert torch.allclose(disc.logits_from_ids(tgt[[2, 0]], src, index), ref[[2, 0]], atol=1e-6)
    mask = (tgt != tokenizer.pad_token_id).long()
    for frozen in (False, True):
        soft = F.one_hot(tgt, disc.model.config.vocab_size).float().requires_grad_()
        out = disc.logits_from_soft(soft, mask, src, frozen=frozen)
        assert torch.allclose(out, ref, atol=1e-5)
        disc.zero_grad()
        out.sum().backward()
        assert soft.grad.abs().sum() > 0
        grads = [p.grad for p in disc.parameters() if p.requires_grad]
        assert all(g is None for g in grads) if frozen else any(g is not None and g.abs().sum() > 0 for g in grads)
    disc.check_soft_inputs()


def test_conditional_reads_the_source_target_only_does_not(make_model, tokenizer):
    src, tgt = _batch(tokenizer)
    other = src[[1, 2, 0]]
    model = make_model("bart", warm=False)
    cond = _perturb(Seq2SeqDiscriminator(model, tokenizer, head="mean", residual=False)).eval()
    alone = _perturb(Seq2SeqDiscriminator(model, tokenizer, head="mean", residual=False, conditional=False)).eval()
    assert (cond.logits_from_ids(tgt, src) - cond.logits_from_ids(tgt, other)).abs().max() > 1e-4
    assert torch.equal(alone.logits_from_ids(tgt), alone.logits_from_ids(tgt, other))
    with pytest.raises(ValueError, match="needs source_ids"):
        cond.logits_from_ids(tgt)


def test_generator_copied_reference_frozen(make_model, tokenizer):
    src, tgt = _batch(tokenizer)
    gen = make_model("bart", warm=False)
    before = copy.deepcopy(gen.state_dict())
    disc = Seq2SeqDiscriminator(gen, tokenizer, head="token", dropout=0.1)
    assert disc.reference is not None and not any(p.requires_grad for p in disc.reference.parameters())
    ref_before = copy.deepcopy(disc.reference.state_dict())
    opt = torch.optim.AdamW([p for p in disc.parameters() if p.requires_grad], lr=1e-2)
    disc.train()
    assert disc.model.training and not disc.reference.training and disc.model.config.dropout == 0.1
    for _ in range(3):
        loss = -disc.score_ids(tgt, src, label="real").mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())
    assert all(torch.equal(ref_before[k], v) for k, v in disc.reference.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in disc.model.state_dict().items())
    disc.sync_reference(disc.model)
    assert all(torch.equal(disc.model.state_dict()[k], v) for k, v in disc.reference.state_dict().items())


@pytest.mark.parametrize("head", HEADS)
def test_save_and_load_are_exact(head, make_model, tokenizer, tmp_path):
    src, tgt = _batch(tokenizer)
    disc = _perturb(Seq2SeqDiscriminator(make_model("t5", warm=False), tokenizer, head=head, generator_features=head != "mean")).eval()
    disc.save_pretrained(str(tmp_path))
    loaded = Seq2SeqDiscriminator.from_pretrained(str(tmp_path))
    assert loaded.settings == disc.settings and loaded.conditional and isinstance(loaded, SequenceDiscriminator)
    assert torch.allclose(loaded.logits_from_ids(tgt, src), disc.logits_from_ids(tgt, src), atol=1e-6)
    assert (tmp_path / "reference").is_dir() == (disc.reference is not None)


def _copy_task(tokenizer, n, seed=0, length=6):
    """Targets that copy the source: trivially separable from a random tiny generator's samples."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, len(tokenizer), (n, length), generator=g)
    eos = torch.full((n, 1), tokenizer.eos_token_id)
    rows = torch.cat([ids, eos], 1).tolist()
    return Dataset.from_dict({"input_ids": rows, "labels": rows})


def test_train_discriminator_reaches_a_target_accuracy(make_model, tokenizer):
    gen = make_model("bart", warm=False)
    data = _copy_task(tokenizer, 160)
    disc = Seq2SeqDiscriminator(gen, tokenizer, head="token")
    rows = []
    result = train_discriminator(disc, gen, data, heldout=32, max_steps=200, target_accuracy=0.9, batch_size=16, learning_rate=3e-3,
                                 eval_every=5, sampling=dict(max_new_tokens=7), log=rows.append)
    assert result.reached_target and result.steps < 200 and result.d_heldout_acc >= 0.9 and result.d_heldout_auc > 0.9
    assert not result.at_chance and result.history[0]["d_heldout_acc"] == 0.5  # a residual start is a coin flip
    assert rows and {"step", "d_heldout_acc", "d_heldout_auc", "d_heldout_loss", "d_train_loss"} <= set(rows[-1])
    # the classic discriminator goes through the same loop (a few steps: plumbing)
    bert = build_default_discriminator(tokenizer, vocab_size=gen.config.vocab_size, hidden_size=32, num_layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 4 steps leave it at chance, which it says
        other = train_discriminator(bert, gen, data, heldout=0.2, max_steps=4, eval_every=2, batch_size=8, sampling=dict(max_new_tokens=7))
    assert other.steps == 4 and len(other.history) == 3


@pytest.mark.parametrize("select_by", ["loss", "auc"])
def test_train_discriminator_keeps_a_trained_state_by_the_chosen_figure(select_by, make_model, tokenizer):
    """The untrained state (logit 0: loss ln 2, accuracy 0.5) is measured but never kept unless it reaches
    the target, even when every trained state has a higher loss; the kept state is the best trained row."""
    gen = make_model("bart", warm=False)
    disc = Seq2SeqDiscriminator(gen, tokenizer)  # the ratio head
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it may stay at chance at this learning rate, which it says
        result = train_discriminator(disc, gen, _copy_task(tokenizer, 96), heldout=32, max_steps=12, eval_every=3, batch_size=16,
                                     learning_rate=0.3, patience=None, select_by=select_by, sampling=dict(max_new_tokens=7))
    trained = result.history[1:]
    assert result.history[0]["step"] == 0 and result.history[0]["d_heldout_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert result.best_step > 0 and len(trained) == 4
    figure = {"loss": min(r["d_heldout_loss"] for r in trained), "auc": max(r["d_heldout_auc"] for r in trained)}[select_by]
    assert (result.d_heldout_loss if select_by == "loss" else result.d_heldout_auc) == figure
    kept = next(r for r in trained if r["step"] == result.best_step)
    assert result.d_heldout_acc == kept["d_heldout_acc"] and result.at_chance == (kept["d_heldout_acc"] < 0.55)
    with pytest.raises(ValueError, match="select_by must be one of"):
        train_discriminator(disc, gen, _copy_task(tokenizer, 8), select_by="f1")


def test_train_discriminator_warns_at_chance(make_model, tokenizer):
    gen = make_model("bart", warm=False)
    sources = _copy_task(tokenizer, 200, seed=1)["input_ids"]
    engine = RolloutEngine(gen, tokenizer, use_generation_config=False)
    fakes = engine.sample(torch.tensor(sources), max_new_tokens=7, generator=torch.Generator().manual_seed(5))
    own = fakes.sequences.masked_fill(fakes.attention_mask == 0, -100).tolist()  # "real" = the generator's own samples
    disc = Seq2SeqDiscriminator(gen, tokenizer, head="token")
    with pytest.warns(UserWarning, match=CHANCE_WARNING):
        result = train_discriminator(disc, gen, {"input_ids": sources, "labels": own}, heldout=100, max_steps=10, eval_every=5,
                                     batch_size=16, learning_rate=1e-5, sampling=dict(max_new_tokens=7))
    assert result.at_chance and abs(result.d_heldout_acc - 0.5) < 0.05


def test_heldout_metrics():
    m = heldout_metrics(torch.tensor([2.0, 1.0, -1.0, 0.0]), torch.tensor([-2.0, 0.5, -3.0, 0.0]))
    assert m["d_heldout_acc"] == pytest.approx(0.625)  # ties at 0 count half
    assert m["d_heldout_auc"] == pytest.approx(12.5 / 16)  # pairs (real, fake) ordered right, ties half
    perfect = heldout_metrics(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.5]))
    assert perfect["d_heldout_auc"] == 1.0 and perfect["d_heldout_acc"] == 0.75


@pytest.mark.parametrize("head, update", [("token", "reinforce"), ("ratio", "gumbel")])
def test_drops_into_the_adversarial_trainer(head, update, make_model, tokenizer, tmp_path):
    from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer

    gen = make_model("bart", warm=False)
    data = _copy_task(tokenizer, 16)
    disc = Seq2SeqDiscriminator(gen, tokenizer, head=head)
    before = {n: p.detach().clone() for n, p in disc.named_parameters() if p.requires_grad}
    args = AdversarialConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=2, learning_rate=1e-3, report_to="none",
                             use_cpu=True, save_strategy="no", logging_steps=1, seed=0, max_new_tokens=7, generator_update=update,
                             discriminator_learning_rate=1e-2)
    trainer = AdversarialTrainer(gen, args, train_dataset=data, processing_class=tokenizer, discriminator=disc)
    assert trainer.discriminator is disc
    trainer.train()
    assert any(not torch.equal(before[n], p) for n, p in disc.named_parameters() if p.requires_grad)
    assert [row for row in trainer.state.log_history if "d_loss" in row]


def test_errors(make_model, tokenizer):
    with pytest.raises(ValueError, match="head must be one of"):
        Seq2SeqDiscriminator(make_model("bart", warm=False), tokenizer, head="cls")
    with pytest.raises(ValueError, match="not an encoder–decoder generator"):
        Seq2SeqDiscriminator(build_default_discriminator(tokenizer).model, tokenizer)
    with pytest.raises(ValueError, match="label must be"):
        Seq2SeqDiscriminator(make_model("bart", warm=False), tokenizer).label_index("human")
    gen = make_model("bart", warm=False)
    with pytest.raises(ValueError, match="max_steps, target_accuracy"):
        train_discriminator(Seq2SeqDiscriminator(gen, tokenizer), gen, _copy_task(tokenizer, 8), max_steps=None)


def test_bench_discriminator_quick_runs():
    """The benchmark's CI size end to end (its full run is in benchmarks/RESULTS.md)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "benchmarks/bench_discriminator.py", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "held-out accuracy" in out and "EBM, Seq2SeqDiscriminator | N=4" in out and "Bayes-optimal" in out and "nan" not in out, out[-3000:]
