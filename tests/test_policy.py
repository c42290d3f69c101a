"""The policy-gradient core: on-policy log-probs at T != 1 with top-k and processors, exact
expectations on a small vocabulary, dropout, group advantages, the clipped surrogate."""

import pytest
import torch
from datasets import Dataset

from hf_seqgan.rollout import Rollout, RolloutEngine
from hf_seqgan.trainers import AdversarialConfig, AdversarialTrainer, GRPOConfig, GRPOTrainer
from hf_seqgan.trainers._policy import disable_dropout, group_advantages, policy_loss, sampled_logprobs

FAMILIES = ["bart", "t5", "marian"]
SAMPLING = dict(do_sample=True, temperature=0.5, top_k=5, top_p=None)


def _teacher_forced_logits(model, batch, rollout):
    index = rollout.source_index
    return model(input_ids=batch["input_ids"][index], attention_mask=batch["attention_mask"][index],
                 decoder_input_ids=rollout.decoder_input_ids, use_cache=False).logits


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("repetition_penalty", [None, 1.5])
def test_loss_logprobs_are_those_of_the_sampled_distribution(make_model, source_batch, family, repetition_penalty):
    """With dropout 0.1 in training mode: disable_dropout makes the loss forward's log-probs (through
    temperature, top-k and a prefix-dependent processor) equal the engine's sampling log-probs."""
    model = make_model(family, **{"dropout_rate" if family == "t5" else "dropout": 0.1})
    if repetition_penalty:
        model.generation_config.repetition_penalty = repetition_penalty
    engine = RolloutEngine(model)
    model.train()
    torch.manual_seed(0)
    rollout = engine.sample(**source_batch, max_new_tokens=8, num_samples=2, **SAMPLING)
    with torch.no_grad():
        noisy = sampled_logprobs(engine, _teacher_forced_logits(model, source_batch, rollout), rollout.sequences, rollout.attention_mask,
                                 max_new_tokens=8, **SAMPLING)
    assert (noisy - rollout.sample_logprobs).abs().max() > 1e-2  # dropout on: another policy
    disable_dropout(model)
    torch.manual_seed(0)
    rollout = engine.sample(**source_batch, max_new_tokens=8, num_samples=2, **SAMPLING)
    logp = sampled_logprobs(engine, _teacher_forced_logits(model, source_batch, rollout), rollout.sequences, rollout.attention_mask,
                            max_new_tokens=8, **SAMPLING)
    torch.testing.assert_close(logp, rollout.sample_logprobs, atol=2e-5, rtol=0)
    assert getattr(model.config, "dropout_rate" if family == "t5" else "dropout") == 0.1  # the saved config keeps its dropout


def _one_token_distribution(model, batch, temperature=0.5, top_k=5):
    """q(y) of the first generated token for source 0, by hand: softmax of the top-k of z / T."""
    engine = RolloutEngine(model)
    start = torch.full((1, 1), engine.decoder_start_token_id)
    z = model(input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1], decoder_input_ids=start).logits[0, 0]
    top = torch.topk(z / temperature, top_k)
    q = torch.softmax(top.values, -1)
    return engine, top.indices, q.detach(), z


def _enumerated(engine, tokens):
    k = tokens.shape[0]
    return Rollout(sequences=tokens[:, None], attention_mask=torch.ones(k, 1, dtype=torch.long), logprobs=torch.zeros(k, 1),
                   source_index=torch.zeros(k, dtype=torch.long), decoder_start_token_id=int(engine.decoder_start_token_id))


def _grad_norm(model):
    return torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None)).item()


@pytest.mark.parametrize("family", FAMILIES)
def test_constant_reward_has_zero_expected_gradient_at_low_temperature(make_model, source_batch, family):
    """E_q[c ∇ log q(y)] = c ∇ Σ_y q(y) = 0 exactly, summed over the top-k vocabulary; the raw
    log_softmax score (the old estimator) is biased."""
    model = make_model(family)
    model.generation_config.forced_eos_token_id = None
    engine, tokens, q, _ = _one_token_distribution(model, source_batch)
    rollout = _enumerated(engine, tokens)
    batch = {k: v[:1] for k, v in source_batch.items()}
    logits = _teacher_forced_logits(model, batch, rollout)
    logp = sampled_logprobs(engine, logits, rollout.sequences, rollout.attention_mask, max_new_tokens=1, **SAMPLING)
    torch.testing.assert_close(logp[:, 0].exp(), q, atol=1e-5, rtol=0)
    loss, _ = policy_loss(logp, 3.0 * q * len(q), rollout.attention_mask, loss_type="reinforce")  # (1/k) Σ_y (c k q(y)) ∇log q(y)
    model.zero_grad()
    loss.backward()
    unbiased = _grad_norm(model)
    model.zero_grad()
    raw = torch.log_softmax(_teacher_forced_logits(model, batch, rollout).float(), -1)[:, 0].gather(-1, tokens[:, None]).squeeze(-1)
    (-(3.0 * q * raw).sum()).backward()
    biased = _grad_norm(model)
    assert biased > 0.05 and unbiased < 1e-4 * biased, (unbiased, biased)


def _prompts(tokenizer, corpus, n=8):
    enc = tokenizer([r["article"] for r in corpus[:n]], truncation=True, max_length=24)
    labels = tokenizer([r["headline"] for r in corpus[:n]], truncation=True, max_length=6).input_ids
    return Dataset.from_dict({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": labels,
                              "prompt": [r["article"] for r in corpus[:n]]})


def _hand_logq(model, batch, tokens, temperature=0.5, top_k=5):
    """log q(y) by hand, in the graph: log-softmax over the top-k of z / T of the first step."""
    engine = RolloutEngine(model)
    start = torch.full((1, 1), engine.decoder_start_token_id)
    z = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=start).logits[0, 0].float()
    top = torch.topk(z / temperature, top_k)
    return torch.log_softmax(top.values, -1), torch.log_softmax(z, -1)[tokens]


@pytest.mark.parametrize("method", ["adversarial", "grpo"])
def test_each_sampling_trainer_follows_the_analytic_score_function_gradient(make_model, tokenizer, corpus, tmp_path, method):
    """Through the trainer's own loss, its sampler patched to return each top-k token of a one-token
    output once with rewards r(y) = c·k·q(y): the update is the exact expectation
    Σ_y q(y) (c - b) ∇ log q(y) under the sampled distribution (T=0.5, top-k 5). For a constant
    reward and no baseline (adversarial) that is zero; for GRPO's group-mean baseline it is the
    analytic gradient with that baseline. The raw log_softmax score would differ."""
    model = make_model("bart")
    model.generation_config.forced_eos_token_id = None
    data = _prompts(tokenizer, corpus)
    batch = tokenizer([corpus[0]["article"]], return_tensors="pt", truncation=True, max_length=24)
    engine, tokens, q, _ = _one_token_distribution(model, batch)
    k, rewards = len(q), 2.0 * len(q) * q

    def reward(prompts, completions, **kw):
        return rewards.tolist()

    common = dict(report_to="none", use_cpu=True, save_strategy="no", max_steps=1, learning_rate=1.0, disable_tqdm=True)
    if method == "adversarial":
        args = AdversarialConfig(str(tmp_path), per_device_train_batch_size=1, use_discriminator=False, baseline="none", mle_weight="0",
                                 sampling_temperature=0.5, top_k=5, max_new_tokens=1, **common)
        trainer = AdversarialTrainer(model, args=args, train_dataset=data.remove_columns("prompt"), processing_class=tokenizer, reward_funcs=[reward])
        inputs = trainer.data_collator([data.remove_columns("prompt")[0]])
        advantage = rewards
    else:
        args = GRPOConfig(str(tmp_path), per_device_train_batch_size=k, num_generations=k, temperature=0.5, top_k=5, max_completion_length=1,
                          scale_rewards="none", loss_type="grpo", **common)
        trainer = GRPOTrainer(model, reward_funcs=reward, args=args, train_dataset=data.select_columns(["prompt"]), processing_class=tokenizer)
        inputs = trainer.data_collator([data.select_columns(["prompt"])[0]])
        advantage = rewards - rewards.mean()
    enumerated = _enumerated(trainer.engine, tokens)
    trainer.engine.sample = lambda *a, **kw: enumerated
    inputs.update(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, inputs)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    got = torch.autograd.grad(loss, params, allow_unused=True)
    logq, raw = _hand_logq(trainer.model, batch, tokens)
    expected = torch.autograd.grad(-(advantage * logq).sum() / k, params, allow_unused=True, retain_graph=True)
    biased = torch.autograd.grad(-(advantage * raw).sum() / k, params, allow_unused=True)
    flat = lambda grads: torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
    torch.testing.assert_close(flat(got), flat(expected), atol=1e-5, rtol=1e-4)
    assert (flat(biased) - flat(expected)).norm() > 0.05
    if method == "adversarial":
        assert flat(got).norm() < 1e-4 * flat(biased).norm()


def test_group_advantages_have_mean_zero_per_prompt():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, 4, scale)
        torch.testing.assert_close(adv.view(2, 4).mean(-1), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(group_advantages(rewards, 4, "none"), torch.tensor([-2.0, -1.0, 0.0, 3.0, -1.0, -1.0, -1.0, 3.0]))
    grouped = group_advantages(rewards, 4, "group").view(2, 4)
    torch.testing.assert_close(grouped.std(-1), torch.ones(2), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="scale_rewards must be one of"):
        group_advantages(rewards, 4, "global")


def test_first_iteration_is_reinforce_with_the_group_mean_baseline():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, 7, requires_grad=True)
    tokens = torch.randint(7, (6, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    rewards = torch.randn(6)
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1) * mask
    adv = group_advantages(rewards, 3, "none")
    loss, stats = policy_loss(logp, adv, mask, loss_type="dr_grpo", max_completion_length=4)
    assert stats["clip_ratio"] == 0  # ratio exactly 1
    (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    baseline = rewards.view(2, 3).mean(-1, keepdim=True).expand(2, 3).reshape(-1)
    reinforce = -((rewards - baseline) * logp.sum(-1)).sum() / (6 * 4)
    (expected,) = torch.autograd.grad(reinforce, logits)
    torch.testing.assert_close(grad, expected)


def test_the_ratio_is_clipped_where_it_matters():
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]])).requires_grad_()
    old = torch.log(torch.tensor([[0.25, 0.5], [0.5, 0.5]]))  # token (0, 0): ratio 2
    adv = torch.tensor([1.0, -1.0])
    loss, stats = policy_loss(logp, adv, torch.ones(2, 2), old_logp=old, epsilon=0.2, loss_type="bnpo")
    assert abs(float(stats["clip_ratio"]) - 0.25) < 1e-6
    (grad,) = torch.autograd.grad(loss, logp)
    assert grad[0, 0] == 0 and grad[0, 1] != 0  # the clipped token carries no gradient
    with pytest.raises(ValueError, match="loss_type must be one of"):
        policy_loss(logp, adv, torch.ones(2, 2), loss_type="dapo")


def test_disable_dropout_zeroes_every_dropout(make_model):
    model = make_model("bart", warm=False, dropout=0.1, attention_dropout=0.1, activation_dropout=0.1)
    disable_dropout(model)
    model.train()
    batch = {"input_ids": torch.tensor([[5, 6, 7, 2]]), "decoder_input_ids": torch.tensor([[2, 5, 6]])}
    torch.testing.assert_close(model(**batch).logits, model(**batch).logits)


def test_cycle_policy_gradient_follows_the_analytic_score_function_gradient(make_model, tokenizer, corpus, tmp_path):
    """CycleTrainer's REINFORCE term on every top-k token of a one-token output of G (T=0.5, top-k 5)
    with rewards c·k·q(y) and no baseline: the exact expected gradient of a constant reward, zero."""
    from hf_seqgan.trainers import CycleConfig, CycleTrainer

    model = make_model("bart")
    model.generation_config.forced_eos_token_id = None
    x = Dataset.from_dict({"input_ids": tokenizer([r["article"] for r in corpus[:8]], truncation=True, max_length=24).input_ids})
    y = Dataset.from_dict({"input_ids": tokenizer([r["headline"] for r in corpus[8:16]], truncation=True, max_length=8).input_ids})
    args = CycleConfig(str(tmp_path), reconstruction_weight="0", adversarial_weight="1", baseline="none", sampling_temperature=0.5,
                       max_new_tokens=1, report_to="none", use_cpu=True, save_strategy="no")
    trainer = CycleTrainer(model, args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    batch = tokenizer([corpus[0]["article"]], return_tensors="pt", truncation=True, max_length=24)
    engine, tokens, q, _ = _one_token_distribution(trainer.model, batch)
    k = len(q)
    sampling = trainer._sampling(trainer.to_y, 1, True)
    sampling["top_k"] = 5  # CycleConfig samples without top-k: the estimator must follow any warper the engine applies
    trainer.model.train()
    loss = trainer._policy_gradient(trainer.to_y, batch["input_ids"], batch["attention_mask"], _enumerated(engine, tokens),
                                    {"adversarial": 2.0 * k * q}, {"adversarial": 1.0}, sampling)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    got = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                     for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True), params)])
    logq, raw = _hand_logq(trainer.model, batch, tokens)
    biased = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(torch.autograd.grad(-(2.0 * q * raw).sum(), params, allow_unused=True), params)])
    assert got.norm() < 1e-4 * biased.norm(), (got.norm(), biased.norm())
