import logging
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import BartConfig, BartForSequenceClassification

from hf_seqgan.discriminators import SequenceDiscriminator, build_default_discriminator
from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer

FREQ_STEPS, FREQ_LR, FREQ_BATCH = 12, 1e-2, 8  # frequency tests: few steps at a high learning rate


def tokenized_pairs(tokenizer, rows) -> Dataset:
    """Article -> headline rows as a tokenized training set (sources <= 40, labels <= 12 tokens)."""
    enc = tokenizer([r["article"] for r in rows], truncation=True, max_length=40)
    labels = tokenizer([r["headline"] for r in rows], truncation=True, max_length=12).input_ids
    return Dataset.from_dict({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": labels})


@pytest.fixture
def train_set(tokenizer, corpus):
    return tokenized_pairs(tokenizer, corpus[:64])


def _config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-3, report_to="none",
        use_cpu=True, save_strategy="no", logging_steps=1, seed=0, max_new_tokens=8, dataloader_num_workers=0,
    )
    base.update(kw)
    return AdversarialConfig(**base)


def _token_shares(model, tokenizer, batch, n=4, seed=0) -> dict:
    """Each token's share of the tokens the model samples (EOS included, padding not) from ``batch``."""
    from hf_seqgan.rollout import RolloutEngine

    engine = RolloutEngine(model, tokenizer)
    model.eval()
    out = engine.sample(**batch, max_new_tokens=8, num_samples=n, generator=torch.Generator().manual_seed(seed))
    tokens = out.sequences[out.attention_mask.bool()]
    ids, counts = tokens.unique(return_counts=True)
    return {int(i): int(c) / tokens.numel() for i, c in zip(ids, counts)}


class TokenShareClassifier(torch.nn.Module):
    """A fixed judge for the frequency tests: logit = scale * (share of ``token`` among the attended
    input positions) + bias. The share goes through a one-column embedding table (1 for ``token``,
    0 otherwise, frozen), so straight-through one-hots reach it as ``inputs_embeds`` exactly like
    ids; only the bias is trained (a shift that the advantage and the Gumbel gradient ignore)."""

    def __init__(self, vocab_size, token, scale=20.0):
        super().__init__()
        self.config = SimpleNamespace(num_labels=1)
        self.embed = torch.nn.Embedding(vocab_size, 1)
        self.embed.weight.data.zero_()
        self.embed.weight.data[token] = 1.0
        self.embed.weight.requires_grad_(False)
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.scale = scale

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, return_dict=True, **_):
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (N, L, 1)
        mask = torch.ones(x.shape[:2]) if attention_mask is None else attention_mask.float()  # (N, L)
        share = (x[..., 0] * mask).sum(-1) / mask.sum(-1)  # (N,)
        return SimpleNamespace(logits=(self.scale * share + self.bias)[:, None])  # (N, 1)


def _rewarded_token(tokenizer, shares: dict) -> int:
    """From the model's own measured sample distribution: the ordinary token whose share is closest to 10%.
    It is one the samples contain (share > 0, so the updates can see it), and, the samples holding at least
    two ordinary tokens, its share is at most 0.5 (the closest to 0.1 is no further from it than the rarest
    one, whose share is at most 1/2): there is room for it to rise."""
    ordinary = {t: s for t, s in shares.items() if t not in tokenizer.all_special_ids}
    assert len(ordinary) >= 2, shares
    token = min(ordinary, key=lambda t: (abs(ordinary[t] - 0.1), t))
    assert 0 < ordinary[token] <= 0.5, (token, ordinary[token])
    return token


# every update mode against a fixed reward that prefers one token, on BART, T5 and Marian, each family
# carrying two modes. Shares of the token before -> after, measured at 12 steps (transformers 5.24): reinforce
# BART 0.08 -> 0.39, Marian 0.09 -> 0.87; rollouts T5 0.06 -> 0.73; step rewards Marian 0.09 -> 1.0; gumbel
# T5 0.06 -> 1.0, BART 0.08 -> 1.0. Of the pairs not run, most rise too (BART rollouts 0.59, Marian rollouts 1.0,
# Marian gumbel 0.98, T5 reinforce 0.11, BART step rewards only 0.13), but T5 step rewards falls to 0.0 at 12 steps.
FREQUENCY_CASES = [
    ("bart", "reinforce"), ("marian", "reinforce"), ("t5", "rollouts"), ("marian", "step_rewards"), ("t5", "gumbel"), ("bart", "gumbel"),
]


@pytest.mark.parametrize("family,mode", FREQUENCY_CASES)
def test_each_mode_raises_the_frequency_of_a_rewarded_token(family, mode, make_model, tokenizer, train_set, source_batch, tmp_path):
    model = make_model(family)
    shares = _token_shares(model, tokenizer, source_batch)
    token = _rewarded_token(tokenizer, shares)
    before = shares[token]  # measured on the very samples the token was chosen from
    common = dict(max_steps=FREQ_STEPS, mle_weight="0", learning_rate=FREQ_LR, per_device_train_batch_size=FREQ_BATCH)
    if mode == "reinforce":
        def prefers_token(completions, completion_ids, **_):  # the share of the token among the sampled ids themselves
            return [sum(t == token for t in row) / max(len(row), 1) for row in completion_ids]

        args = _config(tmp_path, use_discriminator=False, num_samples=2, baseline="leave_one_out", **common)
        kwargs = dict(reward_funcs=[prefers_token])
    else:
        judge = SequenceDiscriminator(TokenShareClassifier(len(tokenizer), token), tokenizer, conditional=False)
        extra = {"rollouts": dict(rollouts=2), "step_rewards": dict(step_rewards=True, gamma=0.9), "gumbel": dict(generator_update="gumbel")}[mode]
        if mode != "gumbel":
            extra.update(num_samples=2, baseline="leave_one_out", reward="logit")
        args = _config(tmp_path, **extra, **common)
        kwargs = dict(discriminator=judge)
    trainer = AdversarialTrainer(model, args=args, train_dataset=train_set, processing_class=tokenizer, **kwargs)
    trainer.train()
    after = _token_shares(trainer.model, tokenizer, source_batch).get(token, 0.0)
    assert after > before + 0.05, (before, after)
    key = "reward_prefers_token" if mode == "reinforce" else "reward"
    logged = [h[key] for h in trainer.state.log_history if key in h]
    assert len(logged) == FREQ_STEPS and sum(logged[-3:]) > sum(logged[:3]), logged


def test_discriminator_learns_against_an_untrained_generator(make_model, tokenizer, train_set, source_batch, tmp_path):
    from hf_seqgan.rollout import RolloutEngine

    model = make_model("bart", warm=False)
    # Fakes provably unlike the real rows: a logit bias far above the untrained model's logits (< 1) makes it
    # emit one ordinary token that no real headline holds, at every step; D starts at chance and must learn this.
    in_labels = {t for row in train_set["labels"] for t in row}
    never = min(t for t in range(len(tokenizer)) if t not in in_labels and t not in tokenizer.all_special_ids)
    model.final_logits_bias[0, never] = 30.0
    fakes = RolloutEngine(model, tokenizer).sample(**source_batch, max_new_tokens=8, num_samples=4, generator=torch.Generator().manual_seed(0))
    assert bool((fakes.sequences == never).all())
    args = _config(tmp_path, max_steps=30, discriminator_pretrain_steps=30, discriminator_learning_rate=2e-3)
    trainer = AdversarialTrainer(model, args=args, train_dataset=train_set, processing_class=tokenizer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    history = [h for h in trainer.state.log_history if "d_acc_real" in h]
    last = history[-5:]
    acc = sum(0.5 * (h["d_acc_real"] + h["d_acc_fake"]) for h in last) / len(last)
    assert acc > 0.9, history[-5:]
    # during discriminator pre-training the generator does not move
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def _separable_generator(make_model, tokenizer, train_set):
    """An untrained BART whose outputs are provably unlike every real row (one token no label holds)."""
    model = make_model("bart", warm=False)
    in_labels = {t for row in train_set["labels"] for t in row}
    never = min(t for t in range(len(tokenizer)) if t not in in_labels and t not in tokenizer.all_special_ids)
    model.final_logits_bias[0, never] = 30.0
    return model


def test_pretraining_stops_at_a_target_heldout_accuracy(make_model, tokenizer, train_set, tmp_path):
    model = _separable_generator(make_model, tokenizer, train_set)
    args = _config(tmp_path, max_steps=40, discriminator_pretrain_steps=40, discriminator_pretrain_target_accuracy=0.9,
                   discriminator_learning_rate=2e-3)
    trainer = AdversarialTrainer(model, args=args, train_dataset=train_set, processing_class=tokenizer)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "d_heldout_acc" in h]
    assert all(0.0 <= h["d_heldout_auc"] <= 1.0 for h in logs)
    first_generator_step = next(i for i, h in enumerate(logs) if "mle_weight" in h)  # the generator learns from here on
    assert 10 <= first_generator_step < 39 and trainer._pretrained
    recent = [h["d_heldout_acc"] for h in logs[first_generator_step - 10:first_generator_step]]
    assert sum(recent) / len(recent) >= 0.9


class ConstantJudge(torch.nn.Module):
    """A discriminator that cannot look at its input (a learned bias alone): every row gets the same
    score, so its held-out accuracy is exactly 0.5 — chance, by construction."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(num_labels=1)
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids=None, attention_mask=None, **_):
        return SimpleNamespace(logits=self.bias.expand(input_ids.shape[0], 1))


def test_a_discriminator_at_chance_is_reported(make_model, tokenizer, train_set, tmp_path, caplog):
    judge = SequenceDiscriminator(ConstantJudge(), tokenizer, conditional=False)
    args = _config(tmp_path, max_steps=4, discriminator_pretrain_steps=2)
    trainer = AdversarialTrainer(make_model("bart"), args=args, discriminator=judge, train_dataset=train_set, processing_class=tokenizer)
    with caplog.at_level(logging.WARNING, logger="hf_seqgan.trainers.adversarial"):
        trainer.train()
    assert "The discriminator cannot tell real from generated: its held-out accuracy is 0.500" in caplog.text
    assert [h["d_heldout_acc"] for h in trainer.state.log_history if "d_heldout_acc" in h] == [0.5] * 4
    assert caplog.text.count("cannot tell real from generated") == 1  # said once


def test_reinforce_gradient_is_the_score_function_gradient(make_model, tokenizer, train_set, tmp_path):
    """-(A * sum_t log p(y_t)) per row, averaged: compare the trainer's gradient with a direct one."""
    model = make_model("t5")
    rewards = {}

    def row_reward(sources, outputs, references):
        # different for every row and never 0, whatever the model emits (even empty outputs): a gradient that
        # dropped the rewards or mixed them up across rows would show
        r = [1.0 + i + len(o) for i, o in enumerate(outputs)]
        rewards["last"] = r
        return r

    args = _config(tmp_path, use_discriminator=False, mle_weight="0", baseline="none", max_steps=1)
    trainer = AdversarialTrainer(model, args=args, train_dataset=train_set, processing_class=tokenizer, reward_funcs=[row_reward])
    batch = trainer.data_collator([train_set[i] for i in range(4)])
    trainer.model.train()
    torch.manual_seed(3)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    grads = torch.autograd.grad(loss, [p for p in trainer.model.parameters() if p.requires_grad], allow_unused=True)
    # the same samples again (same seed), and the analytic estimator on them
    torch.manual_seed(3)
    fakes = trainer.engine.sample(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=8)
    advantage = torch.tensor(rewards["last"])
    scored = trainer.engine.score(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], sequences=fakes.sequences, sequence_mask=fakes.attention_mask)
    manual = -(advantage * scored.logprobs.sum(-1)).mean()
    ref = torch.autograd.grad(manual, [p for p in trainer.model.parameters() if p.requires_grad], allow_unused=True)
    assert any(r is not None and r.abs().max() > 0 for r in ref)  # the comparison is not one of zeros
    for g, r in zip(grads, ref):
        if r is None:
            assert g is None or g.abs().max() == 0
        else:
            assert torch.allclose(g, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", [dict(rollouts=2), dict(step_rewards=True, gamma=0.9), dict(generator_update="gumbel", tau="linear:1,0.5,4")])
def test_discriminator_modes_train_and_log(mode, make_model, tokenizer, train_set, tmp_path):
    model = make_model("bart")
    args = _config(tmp_path, max_steps=2, **mode)
    trainer = AdversarialTrainer(model, args=args, train_dataset=train_set, processing_class=tokenizer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    logs = {k for h in trainer.state.log_history for k in h}
    assert {"d_loss", "d_acc_real", "d_acc_fake", "output_length"} <= logs
    assert ("tau" in logs) == (mode.get("generator_update") == "gumbel")


def test_gumbel_soft_path_equals_ids_path(tokenizer, make_model, source_batch):
    disc = build_default_discriminator(tokenizer, conditional=True, seed=0).eval()
    targets = tokenizer(["japan army signs", "peru", "a b c", "kenya team"], return_tensors="pt", padding=True).input_ids
    mask = (targets != tokenizer.pad_token_id).long()
    one_hot = torch.nn.functional.one_hot(targets, len(tokenizer)).float().requires_grad_()
    soft = disc.logits_from_soft(one_hot, mask, source_batch.input_ids)
    ids = disc.logits_from_ids(targets, source_batch.input_ids)
    assert torch.allclose(soft, ids, atol=1e-5)
    soft.sum().backward()
    assert one_hot.grad.abs().sum() > 0


def test_resume_from_checkpoint_is_exact(make_model, tokenizer, train_set, tmp_path):
    def run(out, steps, resume=None, save=False):
        args = _config(out, max_steps=steps, save_strategy="steps" if save else "no", save_steps=2, num_samples=2,
                       baseline="moving_average", mle_weight="0.5", lr_scheduler_type="constant")
        trainer = AdversarialTrainer(make_model("bart"), args=args, train_dataset=train_set, processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2, save=True)
    resumed = run(tmp_path / "b", 4, resume=str(tmp_path / "b" / "checkpoint-2"))
    for (n, p), (_, q) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(p, q), n
    d1, d2 = straight.auxiliary("discriminator"), resumed.auxiliary("discriminator")
    for (n, p), (_, q) in zip(d1.unwrapped.named_parameters(), d2.unwrapped.named_parameters()):
        assert torch.equal(p, q), n
    assert straight.baseline.value == pytest.approx(resumed.baseline.value, abs=1e-7)
    # save_model writes the generator and the discriminator
    resumed.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / "config.json").exists() and (tmp_path / "final" / "discriminator" / "config.json").exists()
    reloaded = type(d2.unwrapped).from_pretrained(str(tmp_path / "final" / "discriminator"))  # the default: a Seq2SeqDiscriminator
    batch = train_set[:2]
    ids = torch.tensor([x + [tokenizer.pad_token_id] * (12 - len(x)) for x in batch["labels"]])
    src = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in batch["input_ids"]], batch_first=True, padding_value=tokenizer.pad_token_id)
    d2.unwrapped.eval()
    assert torch.allclose(reloaded.eval().logits_from_ids(ids, src), d2.unwrapped.logits_from_ids(ids, src), atol=1e-5)


def test_gradient_accumulation_is_exact(make_model, tokenizer, train_set, tmp_path):
    def run(out, bs, ga):
        args = _config(out, max_steps=2, per_device_train_batch_size=bs, gradient_accumulation_steps=ga, do_sample=False,
                       baseline="none", mle_weight="1.0", discriminator_dropout=0.0, optim="sgd", learning_rate=0.5,
                       discriminator_optimizer="sgd", discriminator_learning_rate=0.5)
        trainer = AdversarialTrainer(make_model("bart"), args=args, train_dataset=train_set, processing_class=tokenizer)
        trainer.train()
        return trainer

    one = run(tmp_path / "a", 16, 1)
    two = run(tmp_path / "b", 8, 2)
    start = dict(make_model("bart").named_parameters())
    assert max((p - start[n]).abs().max().item() for n, p in one.model.named_parameters()) > 1e-3  # the runs moved: no trivial match
    for (n, p), (_, q) in zip(one.model.named_parameters(), two.model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n
    for (n, p), (_, q) in zip(one.auxiliary("discriminator").unwrapped.named_parameters(), two.auxiliary("discriminator").unwrapped.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_clear_errors(make_model, tokenizer, train_set, tmp_path):
    model = make_model("bart", warm=False)
    with pytest.raises(ValueError, match="rollouts must be an integer >= 1"):
        _config(tmp_path, rollouts=-1)
    with pytest.raises(ValueError, match="leave_one_out"):
        _config(tmp_path, baseline="leave_one_out")
    with pytest.raises(ValueError, match="generator_update='fast'"):
        _config(tmp_path, generator_update="fast")
    other = build_default_discriminator(tokenizer)
    other.tokenizer = type(tokenizer)(tokenizer_object=tokenizer.backend_tokenizer, pad_token="<pad>")
    other.tokenizer.add_tokens(["zzzextra"])
    with pytest.raises(ValueError, match="share the generator's vocabulary"):
        AdversarialTrainer(model, _config(tmp_path, generator_update="gumbel"), discriminator=other, train_dataset=train_set, processing_class=tokenizer)
    bart_clf = BartForSequenceClassification(BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
                                                        decoder_ffn_dim=16, pad_token_id=tokenizer.pad_token_id))
    with pytest.raises(ValueError, match="cannot take soft inputs"):
        AdversarialTrainer(model, _config(tmp_path, generator_update="gumbel"), discriminator=bart_clf, discriminator_processing_class=tokenizer,
                           train_dataset=train_set, processing_class=tokenizer)
    no_labels = Dataset.from_dict({"input_ids": train_set["input_ids"], "attention_mask": train_set["attention_mask"]})
    trainer = AdversarialTrainer(model, args=_config(tmp_path), train_dataset=no_labels, processing_class=tokenizer)
    with pytest.raises(ValueError, match="no `labels`"):
        trainer.train()


def test_step_rewards_of_a_ratio_discriminator_are_the_log_ratio_to_go(make_model, tokenizer, train_set, tmp_path):
    """A ratio head scores a prefix by the running sum of its tokens' log-ratios, so ``step_rewards``
    rewards each token with its own increment: with ``gamma=1`` the first token's return is the whole
    sequence's log-ratio (a sum of running sums would count early tokens once per later position)."""
    args = _config(tmp_path, step_rewards=True, gamma=1.0, reward="log_ratio", baseline="none")
    trainer = AdversarialTrainer(make_model("bart"), args=args, train_dataset=train_set, processing_class=tokenizer)
    assert trainer.discriminator.head_type == "ratio" and trainer._additive_score()
    with torch.no_grad():  # a D whose trunk differs from the generator, so the log-ratios are not all 0
        for p in trainer.discriminator.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = tokenizer(["japan army signs a deal with peru", "kenya team wins"], return_tensors="pt", padding=True)
    src = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    with torch.no_grad():
        encoded = trainer.engine.encode(**src)
        fakes = trainer.engine.sample(encoded=encoded, max_new_tokens=8, generator=torch.Generator().manual_seed(0))
        returns, valid = trainer._rewards(src, encoded, fakes, None, {})
        whole = trainer._score_fn(src, None)(fakes.sequences, fakes.attention_mask, fakes.source_index)
    assert valid.all() and returns.shape == fakes.sequences.shape
    assert whole.abs().min() > 1e-3
    assert torch.allclose(returns[:, 0], whole, atol=1e-4)
    last = fakes.attention_mask.sum(-1) - 1  # the last real token's return is its own log-ratio alone
    shorter = fakes.attention_mask.scatter(1, last[:, None], 0)
    with torch.no_grad():
        without_last = trainer._score_fn(src, None)(fakes.sequences.masked_fill(shorter == 0, tokenizer.pad_token_id), shorter, fakes.source_index)
    assert torch.allclose(returns.gather(1, last[:, None])[:, 0], whole - without_last, atol=1e-4)
    assert torch.all(returns * (1 - fakes.attention_mask) == 0)


@pytest.mark.parametrize("lora", [False, True], ids=["frozen-copy", "lora-adapters-off"])
def test_kl_coef_takes_the_kl_against_the_starting_generator(lora, make_model, tokenizer, train_set, tmp_path):
    """kl_coef > 0: the reference is a frozen copy of the start (or, with LoRA, the base with the
    adapters off, no copy); the KL is logged, 0 on the first step, positive once the generator moves."""
    peft = {}
    if lora:
        from peft import LoraConfig

        peft = dict(peft_config=LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainer = AdversarialTrainer(make_model("bart"), _config(tmp_path, kl_coef=0.5, learning_rate=1e-2), train_dataset=train_set,
                                 processing_class=tokenizer, **peft)
    assert (trainer.ref_model is None) == lora
    trainer.train()
    kls = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    assert len(kls) == 4 and kls[0] == pytest.approx(0.0, abs=1e-6) and kls[-1] > 0, kls
