"""ProfessorForcingTrainer and the hidden-state discriminator: what professor forcing promises."""

import pytest
import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

from hf_seqgan.hidden_discriminator import HiddenStateDiscriminator
from hf_seqgan.sampling import unwrap_model
from hf_seqgan.schedules import as_schedule
from hf_seqgan.trainers._base import AUXILIARY_STATE_NAME
from hf_seqgan.trainers.professor_forcing import ProfessorForcingConfig, ProfessorForcingTrainer

BASE_ARGS = dict(
    max_steps=2, per_device_train_batch_size=8, learning_rate=1e-3, report_to="none", use_cpu=True, save_strategy="no",
    disable_tqdm=True, logging_steps=1, seed=0, dataloader_num_workers=0, discriminator_hidden_size=16,
)


@pytest.fixture(scope="module")
def dataset(tokenizer, corpus):
    rows = corpus[:32]
    return Dataset.from_dict({
        "input_ids": tokenizer([r["article"] for r in rows], truncation=True, max_length=24).input_ids,
        "labels": tokenizer([r["headline"] for r in rows], truncation=True, max_length=10).input_ids,
    })


def _args(tmp_path, cls=ProfessorForcingConfig, **overrides):
    fields = {**BASE_ARGS, **overrides}
    if cls is not ProfessorForcingConfig:
        fields = {k: v for k, v in fields.items() if not k.startswith("discriminator_")}
    return cls(output_dir=str(tmp_path), **fields)


def _trainer(model, tmp_path, dataset, tokenizer, peft_config=None, **overrides):
    return ProfessorForcingTrainer(model, _args(tmp_path, **overrides), train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _assert_close(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m: f"{k}: {m}")


# ---------------------------------------------------------------- the discriminator
@pytest.mark.parametrize("encoder", ["gru", "transformer"])
def test_hidden_state_discriminator_ignores_padding_and_round_trips(encoder, tmp_path):
    disc = HiddenStateDiscriminator(8, layers=[-1, 1], hidden_size=8, num_heads=2, encoder=encoder, seed=0).eval()
    states = [torch.randn(3, 6, 8), torch.randn(3, 6, 8)]  # two layers, (N, T, H) each
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] + [0] * 5])
    logits = disc(states, mask)
    garbage = [s.masked_fill(~mask.bool()[..., None], 1e3) for s in states]
    torch.testing.assert_close(disc(garbage, mask), logits)  # padded positions are never read
    torch.testing.assert_close(disc([s[1:2, :3] for s in states], mask[1:2, :3]), logits[1:2])  # nor is the batch's width
    disc.save_pretrained(str(tmp_path))
    again = HiddenStateDiscriminator.from_pretrained(str(tmp_path)).eval()
    assert again.layers == [-1, 1] and torch.equal(again(states, mask), logits)
    with pytest.raises(ValueError, match="right-padded"):
        disc(states, torch.tensor([[0, 1, 1, 1, 1, 1]] * 3))
    with pytest.raises(ValueError, match=r"Expected hidden states \(N, T, 16\)"):
        disc(states[0], mask)


# ---------------------------------------------------------------- the two branches line up
@pytest.mark.parametrize("family", ["bart", "t5"])
def test_free_running_on_its_own_greedy_tokens_equals_teacher_forcing(family, make_model, tokenizer, dataset, tmp_path):
    """Labels = the model's own greedy output: the free-running states must then be the teacher-forced
    ones, position by position (the alignment D relies on)."""
    trainer = _trainer(make_model(family, warm=False), tmp_path, dataset, tokenizer, free_running="greedy", discriminator_input_layers=[0, -1])
    batch = trainer.data_collator([dataset[i] for i in range(4)])
    model = trainer.model.train()
    with torch.no_grad():
        enc = trainer.engine.encode(batch["input_ids"], batch["attention_mask"])
        own = trainer.engine.sample(encoded=enc, max_new_tokens=6, min_new_tokens=6, do_sample=False).sequences  # (B, 6)
        real = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
                     decoder_input_ids=unwrap_model(model).prepare_decoder_input_ids_from_labels(labels=own)).decoder_hidden_states
        fake, mask = trainer._free_running(enc, torch.ones_like(own), 6, [0, -1], grad=False)
    torch.testing.assert_close(fake, torch.cat([real[0], real[-1]], dim=-1), rtol=1e-5, atol=1e-5)
    assert mask.shape == (4, 6) and bool(mask.all())


# ---------------------------------------------------------------- weight 0 is Seq2SeqTrainer, and D learns
def _never_in(dataset, tokenizer) -> int:
    """The lowest ordinary token id that no label of ``dataset`` holds."""
    in_labels = {t for row in dataset["labels"] for t in row}
    return min(t for t in range(len(tokenizer)) if t not in in_labels and t not in tokenizer.all_special_ids)


def _free_running_tokens(trainer, dataset, rows=8, steps=10):
    """The tokens of a sampled free-running decode (as the trainer's default branch runs it), EOS blocked."""
    batch = trainer.data_collator([dataset[i] for i in range(rows)])
    with torch.no_grad():
        enc = trainer.engine.encode(batch["input_ids"], batch["attention_mask"])
        return trainer.engine.differentiable(encoded=enc, max_new_tokens=steps, min_new_tokens=steps, tau=1.0, hard=True, noise=True,
                                             generator=torch.Generator().manual_seed(0)).sequences


def test_weight_zero_is_seq2seq_trainer_and_the_discriminator_learns(make_model, tokenizer, dataset, tmp_path):
    models = [make_model("bart", warm=False) for _ in range(2)]
    # Free-running inputs provably unlike the gold ones: an output bias of 30 (the untrained logits stay below 1,
    # and a dozen small Adam steps cannot close that) makes both copies emit, at every free-running step, one
    # ordinary token that no gold label holds; D starts at chance and has to learn to tell the two apart.
    never = _never_in(dataset, tokenizer)
    for m in models:
        m.final_logits_bias[0, never] = 30.0
    common = dict(max_steps=12, label_smoothing_factor=0.1, learning_rate=3e-3)
    ours = ProfessorForcingTrainer(models[0], _args(tmp_path / "pf", adversarial_weight="0", discriminator_learning_rate=1e-2, **common),
                                   train_dataset=dataset, processing_class=tokenizer)
    plain = Seq2SeqTrainer(models[1], _args(tmp_path / "plain", cls=Seq2SeqTrainingArguments, **common), train_dataset=dataset,
                           data_collator=DataCollatorForSeq2Seq(tokenizer, model=models[1]), processing_class=tokenizer)
    d_before = _params(ours.discriminator)
    assert bool((_free_running_tokens(ours, dataset) == never).all())
    ours.train(), plain.train()
    assert bool((_free_running_tokens(ours, dataset) == never).all())  # and still after the MLE steps
    _assert_close(_params(models[0]), _params(models[1]), atol=1e-6)
    losses = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (ours, plain)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    # evaluation is the plain teacher-forced loss (the default collator gives no decoder inputs: the trainer adds them)
    evaluated = [t.evaluate(dataset)["eval_loss"] for t in (ours, plain)]
    assert evaluated[0] == pytest.approx(evaluated[1], rel=1e-6)
    assert any(not torch.equal(d_before[k], v) for k, v in _params(ours.discriminator).items())
    logs = [h for h in ours.state.log_history if "d_acc_teacher_forced" in h]
    last = logs[-4:]
    accuracy = sum(0.5 * (h["d_acc_teacher_forced"] + h["d_acc_free_running"]) for h in last) / len(last)
    assert accuracy > 0.9, logs  # the constructed free-running inputs are easy to tell from gold ones
    assert all(h["adversarial_weight"] == 0 for h in logs)


# ---------------------------------------------------------------- families, LoRA, where the gradient goes
def _grads(trainer, batch, weight: str):
    trainer.adversarial_weight = as_schedule(weight)
    trainer._noise.manual_seed(0)
    model = trainer.model.train()
    model.zero_grad(set_to_none=True)
    trainer.compute_loss(model, dict(batch), num_items_in_batch=batch["labels"].ne(-100).sum()).backward()
    return {k: (v.grad.clone() if v.grad is not None else torch.zeros_like(v)) for k, v in model.named_parameters() if v.requires_grad}


@pytest.mark.parametrize("family,options", [
    ("bart", {}),
    ("t5", dict(free_running="greedy", discriminator_encoder="transformer")),
    ("marian", dict(max_free_running_steps=3, discriminator_input_layers=[0, -1])),
    ("bart", dict(detach_teacher_forced=False, teacher_forced_term=True, match_gold_length=False)),
    ("bart-lora", {}),
])
def test_families_lora_and_gradient_paths(family, options, make_model, tokenizer, dataset, tmp_path):
    from peft import LoraConfig

    lora = family.endswith("-lora")
    model = make_model(family.split("-")[0], warm=False)
    stops_at_eos = not options.get("match_gold_length", True)
    if stops_at_eos:  # the decode stops at the model's own EOS: an output bias of -30 (logits stay below 1) rules it out
        model.final_logits_bias[0, tokenizer.eos_token_id] = -30.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(model, tmp_path, dataset, tokenizer, peft_config=LoraConfig(task_type="SEQ_2_SEQ_LM", r=4) if lora else None,
                       max_steps=1, **options)
    batch = trainer.data_collator([dataset[i] for i in range(8)])
    if stops_at_eos:  # so the free-running branch compares every position, with no EOS blocking from the trainer
        width = batch["labels"].shape[1]
        _, mask = trainer._free_running(trainer.engine.encode(batch["input_ids"], batch["attention_mask"]), batch["labels"].ne(-100).long(),
                                        width, trainer.discriminator.layers, grad=False)
        assert mask.shape == (8, width) and bool(mask.all())
    adversarial, nll = _grads(trainer, batch, "1"), _grads(trainer, batch, "0")
    decoder = [k for k in nll if "decoder" in k and "lm_head" not in k]
    encoder = [k for k in nll if "encoder" in k and "decoder" not in k and "shared" not in k and "embed" not in k]
    assert decoder and any(not torch.allclose(adversarial[k], nll[k]) for k in decoder)  # the adversarial gradient reaches the decoder
    same_encoder = all(torch.equal(adversarial[k], nll[k]) for k in encoder)
    assert same_encoder == options.get("detach_teacher_forced", True)  # and the encoder only when not detached

    trainer.adversarial_weight = as_schedule("1")
    trainer.train()
    logs = {k for h in trainer.state.log_history for k in h}
    assert {"nll_loss", "adversarial_loss", "d_loss", "d_acc_teacher_forced", "d_acc_free_running", "adversarial_weight", "free_running_length"} <= logs
    assert ("teacher_forced_loss" in logs) == options.get("teacher_forced_term", False)
    lengths = [h["free_running_length"] for h in trainer.state.log_history if "free_running_length" in h]
    assert 0 < max(lengths) <= options.get("max_free_running_steps", 10)
    if lora:
        base = trainer.model.get_base_model().state_dict()
        assert all(torch.equal(before[k], base[k]) for k in before if k in base)
        assert all(v.abs().max() > 0 for k, v in trainer.model.named_parameters() if "lora_B" in k)
    else:
        assert any(not torch.equal(before[k], v) for k, v in unwrap_model(trainer.model).state_dict().items())


# ---------------------------------------------------------------- checkpoints
def test_resume_from_checkpoint_is_exact(make_model, tokenizer, dataset, tmp_path):
    def run(out, steps, resume=None, save="no"):
        trainer = _trainer(make_model("bart", warm=False), out, dataset, tokenizer, max_steps=steps, save_strategy=save, save_steps=2,
                           adversarial_weight="linear:0,1,4", tau="linear:1,0.5,4", lr_scheduler_type="constant")
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2, save="steps")
    checkpoint = tmp_path / "b" / "checkpoint-2"
    state = torch.load(checkpoint / AUXILIARY_STATE_NAME, weights_only=False)
    saved = state["auxiliaries"]["discriminator"]
    assert saved["model"] and saved["optimizer"]["state"] and saved["steps"] == 2 and "noise" in state["extra"]
    resumed = run(tmp_path / "b", 4, resume=str(checkpoint))
    assert resumed.state.global_step == 4
    for a, b in ((straight.model, resumed.model), (straight.discriminator, resumed.discriminator)):
        for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.equal(p, q), n
    weights = lambda t: [h["adversarial_weight"] for h in t.state.log_history if "adversarial_weight" in h][-2:]  # noqa: E731
    assert weights(straight) == weights(resumed) == [0.5, 0.75]
    resumed.save_model(str(tmp_path / "final"))
    reloaded = HiddenStateDiscriminator.from_pretrained(str(tmp_path / "final" / "discriminator")).eval()
    states, mask = torch.randn(2, 5, reloaded.state_size), torch.ones(2, 5, dtype=torch.long)
    assert torch.equal(reloaded(states, mask), resumed.discriminator.eval()(states, mask))


# ---------------------------------------------------------------- gradient accumulation
def test_gradient_accumulation_is_exact(make_model, tokenizer, dataset, tmp_path):
    def run(out, batch_size, accumulation):
        trainer = _trainer(make_model("bart", warm=False), out, dataset, tokenizer, max_steps=2, per_device_train_batch_size=batch_size,
                           gradient_accumulation_steps=accumulation, free_running="greedy", optim="sgd", learning_rate=0.5,
                           discriminator_optimizer="sgd", discriminator_learning_rate=0.5, max_grad_norm=0.0, discriminator_max_grad_norm=0.0)
        trainer.train()
        return trainer

    one, two = run(tmp_path / "a", 16, 1), run(tmp_path / "b", 8, 2)
    _assert_close(_params(one.model), _params(two.model), atol=2e-6)
    _assert_close(_params(one.discriminator), _params(two.discriminator), atol=2e-6)
    moved = max((v - make_model("bart", warm=False).state_dict()[k]).abs().max().item() for k, v in _params(one.model).items())
    assert moved > 1e-3


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("overrides,match", [
    (dict(gradient_checkpointing=True), r"gradient checkpointing drops"),
    (dict(adversarial_weight="-1"), r"adversarial_weight"),
    (dict(tau="linear:1,0,10"), r"must stay > 0"),
    (dict(teacher_forced_term=True), r"no effect while detach_teacher_forced=True"),
    (dict(free_running="beam"), r"free_running='beam'"),
    (dict(discriminator_encoder="lstm"), r"discriminator_encoder='lstm'"),
    (dict(max_free_running_steps=0), r"max_free_running_steps must be a positive integer"),
    (dict(discriminator_steps=2, gradient_accumulation_steps=2), r"discriminator_steps > 1"),
    (dict(discriminator_input_layers=[]), r"at least one decoder layer"),
])
def test_config_errors(overrides, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        _args(tmp_path, **overrides)


def test_trainer_errors(make_model, tokenizer, dataset, tmp_path):
    model = make_model("bart", warm=False)
    model.gradient_checkpointing_enable()
    with pytest.raises(ValueError, match="gradient_checkpointing_disable"):
        _trainer(model, tmp_path, dataset, tokenizer)
    with pytest.raises(ValueError, match=r"discriminator layers \[5\] are out of range"):
        _trainer(make_model("bart", warm=False), tmp_path, dataset, tokenizer, discriminator_input_layers=[5])
    with pytest.raises(ValueError, match="states of size 8 but the generator's are 32"):
        ProfessorForcingTrainer(make_model("bart", warm=False), _args(tmp_path), train_dataset=dataset, processing_class=tokenizer,
                                discriminator=HiddenStateDiscriminator(8))
    with pytest.raises(TypeError, match="args must be a ProfessorForcingConfig"):
        ProfessorForcingTrainer(make_model("bart", warm=False), _args(tmp_path, cls=Seq2SeqTrainingArguments))
    no_labels = Dataset.from_dict({"input_ids": dataset["input_ids"]})
    with pytest.raises(ValueError, match="needs `input_ids` and `labels`"):
        _trainer(make_model("bart", warm=False), tmp_path, no_labels, tokenizer).train()
