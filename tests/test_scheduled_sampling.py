"""ScheduledSamplingTrainer: what scheduled sampling promises, on tiny models of every family."""

import pytest
import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, GPT2Config, GPT2LMHeadModel, Seq2SeqTrainer, Seq2SeqTrainingArguments

from hf_seqgan.sampling import soft_embed, unwrap_model
from hf_seqgan.trainers import ScheduledSamplingConfig, ScheduledSamplingTrainer

from hf_seqgan.tiny import TINY_FAMILIES as FAMILIES

BASE_ARGS = dict(
    max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, report_to="none", use_cpu=True,
    save_strategy="no", disable_tqdm=True, logging_steps=1, seed=0,
)


@pytest.fixture(scope="module")
def dataset(tokenizer, corpus):
    pairs = corpus[:16]
    return Dataset.from_dict({
        "input_ids": [tokenizer(p["article"]).input_ids for p in pairs],
        "labels": [tokenizer(p["headline"]).input_ids for p in pairs],
    })


def _args(tmp_path, cls=ScheduledSamplingConfig, **overrides):
    return cls(output_dir=str(tmp_path), **{**BASE_ARGS, **overrides})


def _trainer(model, tmp_path, dataset, tokenizer, peft_config=None, **overrides):
    return ScheduledSamplingTrainer(model, _args(tmp_path, **overrides), train_dataset=dataset, eval_dataset=dataset,
                                    processing_class=tokenizer, peft_config=peft_config)


def _batch(dataset, tokenizer, model, n=4):
    return DataCollatorForSeq2Seq(tokenizer, model=model)([dataset[i] for i in range(n)])


def _trainable(model):
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _assert_same_params(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m: f"{k}: {m}")


# ---------------------------------------------------------------- p = 1 is Seq2SeqTrainer
@pytest.mark.parametrize("family,mode,label_smoothing", [
    ("bart", "parallel", 0.0), ("t5", "parallel", 0.1), ("marian", "autoregressive", 0.0),
    ("mbart", "parallel", 0.1), ("pegasus", "parallel", 0.0),
])
def test_gold_probability_one_is_seq2seq_trainer(family, mode, label_smoothing, make_model, tokenizer, dataset, tmp_path):
    models = [make_model(family, warm=False) for _ in range(2)]
    common = dict(label_smoothing_factor=label_smoothing, max_steps=3, optim="sgd", learning_rate=0.5)
    ours = ScheduledSamplingTrainer(models[0], _args(tmp_path / "ss", gold_probability="1", mode=mode, **common),
                                    train_dataset=dataset, data_collator=DataCollatorForSeq2Seq(tokenizer, model=models[0]),
                                    processing_class=tokenizer)
    plain = Seq2SeqTrainer(models[1], _args(tmp_path / "plain", cls=Seq2SeqTrainingArguments, **common), train_dataset=dataset,
                           data_collator=DataCollatorForSeq2Seq(tokenizer, model=models[1]), processing_class=tokenizer)
    batch = _batch(dataset, tokenizer, models[0])
    count = batch["labels"].ne(-100).sum()
    models[0].train(), models[1].train()
    loss_ours = ours.compute_loss(models[0], dict(batch), num_items_in_batch=count)
    loss_plain = plain.compute_loss(models[1], dict(batch), num_items_in_batch=count)
    torch.testing.assert_close(loss_ours, loss_plain, rtol=1e-6, atol=0)

    ours.train(), plain.train()
    losses = [[log["loss"] for log in t.state.log_history if "loss" in log] for t in (ours, plain)]
    assert len(losses[0]) == 3
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    _assert_same_params(_trainable(models[0]), _trainable(models[1]), atol=1e-6)


# ---------------------------------------------------------------- p = 0 feeds predictions
def _second_pass_inputs(trainer, model, batch):
    """Run the training loss once and return what the decoder saw in its last call."""
    seen = []
    hook = unwrap_model(model).get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("inputs_embeds") if kwargs.get("input_ids") is None else kwargs["input_ids"]),
        with_kwargs=True)
    model.train()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=batch["labels"].ne(-100).sum())
    hook.remove()
    assert torch.isfinite(loss)
    return seen[-1].detach()


def _teacher_forced_logits(model, batch, decoder_input_ids):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids).logits


def _successor_bias(model, shift, strength):
    """Add ``strength`` to the logit of ``(input token + shift) % V`` at every decoder position, in every call
    that feeds decoder token ids: the model's choice after token x is then ``x + shift`` (for a strength far
    above the untrained tiny models' logits, a few units at most), whatever the weights. Predictions vary along any
    sequence and differ from the token they follow, by construction rather than by what a model emits."""

    def hook(module, args, kwargs, output):
        ids = kwargs.get("decoder_input_ids")
        if ids is not None:
            vocab = output.logits.shape[-1]
            output.logits = output.logits + strength * torch.nn.functional.one_hot((ids + shift) % vocab, vocab).to(output.logits.dtype)
        return output

    return model.register_forward_hook(hook, with_kwargs=True)


def _shift_avoiding(start, tokens, vocab):
    """The smallest shift s >= 1 with ``(start + s) % vocab`` none of ``tokens``."""
    taken = set(tokens.tolist())
    return next(s for s in range(1, vocab) if (start + s) % vocab not in taken)


CASES = [(f, mode, "hard") for mode in ("parallel", "autoregressive") for f in FAMILIES] + [
    ("bart", "parallel", "softmax"), ("marian", "parallel", "softmax")]


@pytest.mark.parametrize("family,mode,mixing", CASES)
def test_gold_probability_zero_feeds_predictions(family, mode, mixing, make_model, tokenizer, dataset, tmp_path):
    model = make_model(family, warm=False)
    trainer = _trainer(model, tmp_path, dataset, tokenizer, gold_probability="0", mode=mode, mixing=mixing, mixing_temperature="0.5")
    batch = _batch(dataset, tokenizer, model)
    gold, labels = batch["decoder_input_ids"], batch["labels"]
    replaced = labels.ne(-100)
    replaced[:, 0] = False
    mask = replaced[:, 1:]
    vocab = unwrap_model(model).config.vocab_size
    start = int(gold[0, 0])
    # The model's choice after token x is x + shift (a strong logit bias; a milder one keeps the soft mixtures
    # soft), the shift chosen so that the first choice after the decoder start is no row's gold token there.
    shift = _shift_avoiding(start, gold[:, 1], vocab)
    _successor_bias(model, shift, 100.0 if mixing == "hard" else 3.0)
    # the gold inputs vary along every compared stretch: a prediction read one position off would show
    assert not torch.equal(gold[:, :-1][mask], gold[:, 1:][mask])
    seen = _second_pass_inputs(trainer, model, batch)
    if mixing != "hard":  # the expected embedding under softmax(logits / 0.5) of the gold-prefix prediction
        probs = torch.softmax(_teacher_forced_logits(model, batch, gold) / 0.5, dim=-1)
        assert 0.2 < probs.max(-1).values.min() and probs.max(-1).values.max() < 0.9  # soft, and peaked on x + shift
        expected = soft_embed(model, probs).detach()
        torch.testing.assert_close(seen[:, 1:][replaced[:, 1:]], expected[:, :-1][replaced[:, 1:]], rtol=1e-5, atol=1e-5)
        # an off-by-one would show: consecutive expected embeddings differ
        assert (expected[:, :-1][mask] - expected[:, 1:][mask]).abs().amax(-1).min() > 1e-3
        start_embed = soft_embed(model, torch.nn.functional.one_hot(gold[:, :1], probs.shape[-1]).float())  # always gold
        torch.testing.assert_close(seen[:, :1], start_embed.detach(), rtol=0, atol=0)
        return
    assert torch.equal(seen[:, 0], gold[:, 0])
    # parallel: predictions from the gold prefix; autoregressive: from the model's own prefix (greedy)
    logits = _teacher_forced_logits(model, batch, gold if mode == "parallel" else seen)
    predicted = logits.argmax(-1)  # the prediction for decoder input t comes from position t-1
    assert torch.equal(seen[:, 1:][mask], predicted[:, :-1][mask])
    assert not torch.equal(predicted[:, :-1][mask], predicted[:, 1:][mask])  # an off-by-one would show
    positions = torch.arange(gold.shape[1])[None, :].expand_as(gold)
    if mode == "parallel":  # the prediction after gold token x is x + shift
        own = torch.cat([gold[:, :1], (gold[:, :-1] + shift) % vocab], dim=1)
    else:  # the model's own prefix: start, start + shift, start + 2 shift, ... (the known greedy chain)
        own = (start + shift * positions) % vocab
    assert torch.equal(seen[replaced], own[replaced])
    # and what is fed differs from the gold prefix: at the first step, in every row (the shift was chosen so)
    assert replaced[:, 1].all() and bool((seen[:, 1] != gold[:, 1]).all())


def test_backprop_predictions_adds_gradient_through_first_pass(make_model, tokenizer, dataset, tmp_path):
    grads, losses = [], []
    for backprop in (False, True):
        model = make_model("bart", warm=False)
        trainer = _trainer(model, tmp_path, dataset, tokenizer, gold_probability="0", mixing="softmax", backprop_predictions=backprop)
        batch = _batch(dataset, tokenizer, model)
        model.train()
        torch.manual_seed(0)
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        losses.append(loss.detach())
        grads.append(unwrap_model(model).lm_head.weight.grad.clone())
    torch.testing.assert_close(losses[0], losses[1])
    assert not torch.allclose(grads[0], grads[1], atol=1e-7)


# ---------------------------------------------------------------- gradient accumulation
@pytest.mark.parametrize("family,gold_probability", [("bart", "0"), ("t5", "0"), ("marian", "1")])
def test_gradient_accumulation_is_exact(family, gold_probability, make_model, tokenizer, dataset, tmp_path):
    params = []
    for batch_size, accumulation in ((16, 1), (8, 2)):
        model = make_model(family, warm=False)
        trainer = _trainer(model, tmp_path, dataset, tokenizer, gold_probability=gold_probability, max_steps=1, optim="sgd",
                           learning_rate=1.0, max_grad_norm=0.0, per_device_train_batch_size=batch_size,
                           gradient_accumulation_steps=accumulation)
        trainer.train()
        params.append(_trainable(model))
    moved = max((params[0][k] - make_model(family, warm=False).state_dict()[k]).abs().max().item() for k in params[0])
    assert moved > 1e-3
    _assert_same_params(params[0], params[1], atol=2e-5)


# ---------------------------------------------------------------- LoRA
@pytest.mark.parametrize("family,target_modules", [("bart", None), ("t5", None), ("marian", "all-linear"), ("mbart", "all-linear"), ("pegasus", "all-linear")])
def test_lora(family, target_modules, make_model, tokenizer, dataset, tmp_path):
    from peft import LoraConfig

    model = make_model(family, warm=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(model, tmp_path, dataset, tokenizer, gold_probability="0.5", learning_rate=1e-2,
                       peft_config=LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, target_modules=target_modules))
    trainer.train()
    peft_model = trainer.model
    lora = {k: v for k, v in peft_model.named_parameters() if "lora_B" in k}
    assert lora and all(v.abs().max() > 0 for v in lora.values())  # lora_B starts at zero
    base = peft_model.get_base_model().state_dict()
    frozen = [k for k in before if k in base]
    assert frozen and all(torch.equal(before[k], base[k]) for k in frozen)
    assert 0 < trainer.state.log_history[-2]["replaced_fraction"] < 1


# ---------------------------------------------------------------- evaluation is Seq2SeqTrainer's
def test_evaluation_does_not_mix(make_model, tokenizer, dataset, tmp_path):
    models = [make_model("t5", warm=False) for _ in range(2)]
    common = dict(predict_with_generate=True, generation_max_length=12, per_device_eval_batch_size=8)
    ours = _trainer(models[0], tmp_path, dataset, tokenizer, gold_probability="0", **common)
    plain = Seq2SeqTrainer(models[1], _args(tmp_path, cls=Seq2SeqTrainingArguments, **common), eval_dataset=dataset,
                           data_collator=DataCollatorForSeq2Seq(tokenizer), processing_class=tokenizer)
    out = [t.predict(dataset) for t in (ours, plain)]
    assert out[0].metrics["test_loss"] == pytest.approx(out[1].metrics["test_loss"], rel=1e-6)
    assert (out[0].predictions == out[1].predictions).all()
    ours.args.predict_with_generate = plain.args.predict_with_generate = False
    losses = [t.evaluate()["eval_loss"] for t in (ours, plain)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


# ---------------------------------------------------------------- logging and resume
def test_schedule_is_logged_and_resumes(make_model, tokenizer, dataset, tmp_path):
    overrides = dict(gold_probability="linear:1,0,4", max_steps=4, save_strategy="steps", save_steps=2, prediction="sample")
    full = _trainer(make_model("bart", warm=False), tmp_path / "full", dataset, tokenizer, **overrides)
    full.train()
    logs = [log for log in full.state.log_history if "gold_probability" in log]
    assert [log["step"] for log in logs] == [1, 2, 3, 4]
    assert [log["gold_probability"] for log in logs] == [1.0, 0.75, 0.5, 0.25]  # the value before each step
    assert logs[0]["replaced_fraction"] == 0.0 and 0.4 < logs[3]["replaced_fraction"] <= 1.0

    resumed = _trainer(make_model("bart", warm=False), tmp_path / "resumed", dataset, tokenizer, **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    again = [log for log in resumed.state.log_history if "gold_probability" in log and log["step"] > 2]
    assert [log["gold_probability"] for log in again] == [0.5, 0.25]
    assert [log["replaced_fraction"] for log in again] == [log["replaced_fraction"] for log in logs[2:]]
    _assert_same_params(_trainable(full.model), _trainable(resumed.model), atol=1e-6)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("overrides,match", [
    (dict(gold_probability="linear:1.5,0,10"), r"gold_probability=.*outside the allowed range \[0, 1\]"),
    (dict(gold_probability="-0.1"), r"outside the allowed range"),
    (dict(mode="beam"), r"mode='beam' is not one of \['parallel', 'autoregressive'\]"),
    (dict(prediction="nucleus"), r"prediction='nucleus'"),
    (dict(mixing="soft"), r"mixing='soft'"),
    (dict(prediction="top_k", prediction_top_k=0), r"prediction_top_k=0"),
    (dict(mode="autoregressive", mixing="softmax"), r"needs mode='parallel'"),
    (dict(backprop_predictions=True), r"no effect with hard tokens"),
    (dict(mixing_temperature="linear:1,0,10"), r"must stay > 0"),
])
def test_config_errors(overrides, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        _args(tmp_path, **overrides)


def test_trainer_errors(make_model, tokenizer, dataset, tmp_path):
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="not an encoder-decoder model"):
        _trainer(gpt2, tmp_path, dataset, tokenizer)
    with pytest.raises(TypeError, match="peft_config must be a peft.PeftConfig"):
        _trainer(make_model("bart", warm=False), tmp_path, dataset, tokenizer, peft_config={"r": 4})
    with pytest.raises(TypeError, match="args must be a ScheduledSamplingConfig"):
        ScheduledSamplingTrainer(make_model("bart", warm=False), _args(tmp_path, cls=Seq2SeqTrainingArguments))
    model = make_model("bart", warm=False)  # labels shifted with another start token than the decoder's
    trainer = _trainer(model, tmp_path, dataset, tokenizer, gold_probability="0", mode="autoregressive")
    batch = _batch(dataset, tokenizer, model)
    batch["decoder_input_ids"][:, 0] = tokenizer.bos_token_id
    with pytest.raises(ValueError, match="decodes from decoder_start_token_id=2"):
        trainer.compute_loss(model.train(), batch)
