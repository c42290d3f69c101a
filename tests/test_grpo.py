"""GRPOTrainer: TRL's GRPO for encoder–decoder models (fields, reward functions, what it learns,
PEFT, resume, accumulation, logging, errors)."""

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import BartConfig, BartForSequenceClassification

from hf_seqgan.trainers import GRPOConfig, GRPOTrainer

FAMILIES = ["bart", "t5", "marian"]


@pytest.fixture
def prompts(corpus):
    return Dataset.from_dict({"prompt": [r["article"] for r in corpus[:64]], "reference": [r["headline"] for r in corpus[:64]]})


def _config(tmp_path, **kw):
    base = dict(per_device_train_batch_size=16, num_generations=4, max_completion_length=8, learning_rate=1e-2, max_steps=4,
                report_to="none", use_cpu=True, save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True, dataloader_num_workers=0)
    return GRPOConfig(str(tmp_path), **{**base, **kw})


def _token_share(trainer, token, prompts, n=64):
    engine = trainer.engine
    trainer.model.eval()
    batch = engine.tokenize(prompts[:16], max_length=32)
    torch.manual_seed(123)
    out = engine.sample(**batch, max_new_tokens=8, num_samples=4)
    real = out.attention_mask.bool()
    return (out.sequences[real] == token).float().mean().item()


def _frequent_token(trainer, prompts, tokenizer):
    """A token the untrained model does emit (neither special nor dominant): the precondition of the
    frequency test, built from the model's own samples rather than hoped for."""
    engine = trainer.engine
    batch = engine.tokenize(prompts[:16], max_length=32)
    torch.manual_seed(123)
    out = engine.sample(**batch, max_new_tokens=8, num_samples=4)
    counts = torch.bincount(out.sequences[out.attention_mask.bool()], minlength=len(tokenizer)).float()
    counts[tokenizer.all_special_ids] = 0
    share = counts / counts.sum()
    candidates = ((share > 0) & (share < 0.3)).nonzero().flatten()
    return int(candidates[share[candidates].argmax()])


@pytest.mark.parametrize("family", FAMILIES)
def test_grpo_raises_a_rewarded_token_frequency(make_model, tokenizer, prompts, tmp_path, family):
    state = {}

    def share_of_token(prompts, completions, completion_ids, **kwargs):  # TRL's signature
        return [sum(t == state["token"] for t in ids) / max(len(ids), 1) for ids in completion_ids]

    trainer = GRPOTrainer(make_model(family), reward_funcs=share_of_token, args=_config(tmp_path, max_steps=24), train_dataset=prompts,
                          processing_class=tokenizer)
    state["token"] = _frequent_token(trainer, prompts["prompt"], tokenizer)
    before = _token_share(trainer, state["token"], prompts["prompt"])
    assert before > 0
    trainer.train()
    after = _token_share(trainer, state["token"], prompts["prompt"])
    assert after > before + 0.15, (before, after)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    assert rewards[-1] > rewards[0]


def test_trl_reward_functions_work_unchanged(make_model, tokenizer, prompts, tmp_path):
    """A TRL reward function without completion_ids, one reading a dataset column, one returning None
    for rows it does not apply to, and a sequence-classification reward model with its tokenizer."""
    seen = {}

    def length_reward(completions, **kwargs):
        return [float(len(c)) for c in completions]

    def overlap(prompts, completions, reference, **kwargs):
        seen["reference"] = reference
        return [len(set(c.split()) & set(r.split())) / 5 for c, r in zip(completions, reference)]

    def only_some(completions, **kwargs):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    judge = BartForSequenceClassification(BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                                     decoder_ffn_dim=32, num_labels=1, pad_token_id=tokenizer.pad_token_id,
                                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    trainer = GRPOTrainer(make_model("bart"), reward_funcs=[length_reward, overlap, only_some, judge],
                          args=_config(tmp_path, max_steps=2, reward_weights=[0.1, 1.0, 1.0, 1.0]), train_dataset=prompts,
                          processing_class=tokenizer, reward_processing_classes=[None, None, None, tokenizer])
    trainer.train()
    logged = trainer.state.log_history[0]
    assert {"rewards/length_reward/mean", "rewards/overlap/mean", "rewards/only_some/mean"} <= set(logged)
    assert logged["rewards/only_some/mean"] == 1.0  # the mean over the rows it applies to
    assert len(seen["reference"]) == 16 and all(isinstance(r, str) for r in seen["reference"])


def test_num_iterations_reuses_completions_and_clips_the_ratio(make_model, tokenizer, prompts, tmp_path):
    trainer = GRPOTrainer(make_model("bart"), reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions],
                          args=_config(tmp_path, max_steps=4, num_iterations=2, epsilon=0.01, learning_rate=5e-2), train_dataset=prompts,
                          processing_class=tokenizer)
    calls = []
    sample = trainer.engine.sample
    trainer.engine.sample = lambda *a, **kw: calls.append(1) or sample(*a, **kw)
    trainer.train()
    assert len(calls) == 2  # 4 steps, each batch of completions used twice
    clip = [h["clip_ratio"] for h in trainer.state.log_history if "clip_ratio" in h]
    assert clip[0] == 0 and clip[2] == 0  # first use of a batch: the ratio is exactly 1
    assert clip[1] > 0  # second use, after an update at a high learning rate: tokens clipped


def test_lora(make_model, tokenizer, prompts, tmp_path):
    model = make_model("bart")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = GRPOTrainer(model, reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions], args=_config(tmp_path, max_steps=3),
                          train_dataset=prompts, processing_class=tokenizer, peft_config=LoraConfig(task_type="SEQ_2_SEQ_LM", r=4))
    assert isinstance(trainer.model, PeftModel)
    trainer.train()
    lora = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for p in lora)
    merged_base = trainer.model.get_base_model().state_dict()
    assert all(torch.equal(merged_base[k.replace(".weight", ".base_layer.weight")] if k.replace(".weight", ".base_layer.weight") in merged_base
                           else merged_base[k], v) for k, v in base.items() if k in merged_base or k.replace(".weight", ".base_layer.weight") in merged_base)


def test_resume_is_exact(make_model, tokenizer, prompts, tmp_path):
    reward = lambda completions, **kw: [float(len(c)) for c in completions]  # noqa: E731
    full = GRPOTrainer(make_model("bart"), reward_funcs=reward, args=_config(tmp_path / "a", max_steps=4), train_dataset=prompts, processing_class=tokenizer)
    full.train()
    half = GRPOTrainer(make_model("bart"), reward_funcs=reward, args=_config(tmp_path / "b", max_steps=4, save_strategy="steps", save_steps=2),
                       train_dataset=prompts, processing_class=tokenizer)
    half.train()
    resumed = GRPOTrainer(make_model("bart"), reward_funcs=reward, args=_config(tmp_path / "b", max_steps=4), train_dataset=prompts,
                          processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-2"))
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)


def _per_prompt_sampler(sample, pad):
    """The engine's sampler, run on each prompt alone with a generator seeded by its tokens: the same
    completions for a prompt in any batch."""
    from hf_seqgan.rollout import Rollout

    def fixed(ids, mask, encoded=None, **kw):
        parts = []
        for row, row_mask in zip(ids, mask):
            real = row[row_mask.bool()][None]
            parts.append(sample(real, torch.ones_like(real), **{**kw, "generator": torch.Generator().manual_seed(int(real.sum()))}))
        width = max(p.sequences.shape[1] for p in parts)
        grow = lambda t, value: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)  # noqa: E731
        counts = [p.sequences.shape[0] for p in parts]
        return Rollout(sequences=torch.cat([grow(p.sequences, pad) for p in parts]), attention_mask=torch.cat([grow(p.attention_mask, 0) for p in parts]),
                       logprobs=torch.cat([grow(p.logprobs, 0.0) for p in parts]),
                       source_index=torch.arange(len(parts)).repeat_interleave(torch.tensor(counts)), decoder_start_token_id=parts[0].decoder_start_token_id)

    return fixed


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_gradient_accumulation_is_exact(make_model, tokenizer, prompts, tmp_path, loss_type):
    """2 micro-batches x 8 completions equal 1 x 16, with the completions fixed (a deterministic
    decode of each prompt, so that only the loss normalization is compared)."""
    reward = lambda completions, **kw: [float(len(c)) for c in completions]  # noqa: E731
    results = []
    for per_device, accumulation in ((16, 1), (8, 2)):
        trainer = GRPOTrainer(make_model("bart"), reward_funcs=reward,
                              args=_config(tmp_path / f"{accumulation}", max_steps=2, per_device_train_batch_size=per_device,
                                           gradient_accumulation_steps=accumulation, loss_type=loss_type, optim="sgd"),
                              train_dataset=prompts, processing_class=tokenizer)
        trainer.engine.sample = _per_prompt_sampler(trainer.engine.sample, trainer.engine.pad_token_id)
        trainer.train()
        results.append([p.detach().clone() for p in trainer.model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_log_completions_prints_a_table(make_model, tokenizer, prompts, tmp_path, capsys):
    def score(completions, **kwargs):
        return [1.0] * len(completions)

    trainer = GRPOTrainer(make_model("bart"), reward_funcs=score, args=_config(tmp_path, max_steps=1, log_completions=True, num_completions_to_print=2),
                          train_dataset=prompts, processing_class=tokenizer)
    trainer.train()
    out = capsys.readouterr().out
    assert "step | prompt | completion | score | advantage" in out
    assert prompts["prompt"][0] in out or any(p in out for p in prompts["prompt"])
    assert len(trainer.completions_table) == 16


def test_errors(make_model, tokenizer, prompts, tmp_path):
    with pytest.raises(ValueError, match="multiple of num_generations=3"):
        _config(tmp_path, num_generations=3)
    with pytest.raises(ValueError, match="loss_type='dapo'"):
        _config(tmp_path, loss_type="dapo")
    with pytest.raises(ValueError, match="no 'prompt' column"):
        GRPOTrainer(make_model("bart"), reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=_config(tmp_path),
                    train_dataset=prompts.rename_column("prompt", "article"), processing_class=tokenizer)
    with pytest.raises(ValueError, match="returned 1 values for 16 completions"):
        GRPOTrainer(make_model("bart"), reward_funcs=lambda completions, **kw: [0.0], args=_config(tmp_path, max_steps=1),
                    train_dataset=prompts, processing_class=tokenizer).train()
    assert _config(tmp_path, scale_rewards=False).scale_rewards == "none"


@pytest.mark.parametrize("lora", [False, True], ids=["frozen-copy", "lora-adapters-off"])
def test_beta_takes_the_kl_against_the_starting_policy(lora, make_model, tokenizer, prompts, tmp_path):
    """beta > 0: the reference is a frozen copy of the start (or, with LoRA, the base with the adapters
    off, no copy); the KL is logged, 0 while the policy equals its start, positive once it moves."""
    peft = {}
    if lora:
        from peft import LoraConfig

        peft = dict(peft_config=LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainer = GRPOTrainer(make_model("bart"), reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions],
                          args=_config(tmp_path, beta=0.5), train_dataset=prompts, processing_class=tokenizer, **peft)
    assert (trainer.ref_model is None) == lora
    start = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()} if not lora else None
    trainer.train()
    kls = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    assert len(kls) == 4 and kls[0] == pytest.approx(0.0, abs=1e-6) and kls[-1] > 0, kls
    if not lora:
        assert all(torch.equal(start[n], p) for n, p in trainer.ref_model.named_parameters())
