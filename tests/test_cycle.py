import pytest
import torch
from datasets import Dataset

from hf_seqgan.trainers._cycle_setup import TargetDomainSampler
from hf_seqgan.trainers.cycle import CycleConfig, CycleTrainer

EN, DE = "en_XX", "de_DE"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a shared, loaded machine two OpenMP
    threads make these step-by-step decodes many times slower (measured: 72 s against 6 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def domains(tokenizer, corpus):
    """Unpaired corpora: articles (X) and headlines of other articles (Y)."""
    x = tokenizer([r["article"] for r in corpus[:48]], truncation=True, max_length=24).input_ids
    y = tokenizer([r["headline"] for r in corpus[100:148]], truncation=True, max_length=10).input_ids
    return Dataset.from_dict({"input_ids": x}), Dataset.from_dict({"input_ids": y})


def _config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, learning_rate=1e-3, report_to="none", use_cpu=True,
        save_strategy="no", logging_steps=1, seed=0, max_new_tokens=6, dataloader_num_workers=0, discriminator_learning_rate=1e-3,
        reconstruction_weight="0", adversarial_weight="0",
    )
    base.update(kw)
    return CycleConfig(**base)


def _params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _moved(before, module):
    return any(not torch.equal(before[n], p) for n, p in module.named_parameters())


# (family, loss settings, models expected to move)
CASES = [
    ("bart", dict(reconstruction_weight="1"), {"G", "R"}),
    ("t5", dict(reconstruction_weight="1", reconstruction_update="gumbel"), {"G", "R"}),
    # the classifier D: the default seq2seq D starts at a log-ratio of exactly 0 (no signal for G on its first step)
    ("marian", dict(adversarial_weight="1", discriminator_type="classifier"), {"G", "D"}),
    ("bart", dict(adversarial_weight="1", adversarial_update="gumbel", discriminator_type="classifier"), {"G", "D"}),
    ("t5", dict(denoising_weight="1"), {"G", "R"}),
    ("marian", dict(backtranslation_weight="1"), {"G", "R"}),
]


@pytest.mark.parametrize("family,losses,expected", CASES, ids=["bart-reconstruction-reinforce", "t5-reconstruction-gumbel", "marian-adversarial-reinforce", "bart-adversarial-gumbel", "t5-denoising",
                              "marian-backtranslation"])
def test_each_loss_moves_the_right_models(family, losses, expected, make_model, tokenizer, domains, tmp_path):
    x, y = domains
    trainer = CycleTrainer(make_model(family, warm=False), _config(tmp_path, **losses), train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    models = {"G": trainer.model, "R": trainer.reconstructor}
    if trainer.discriminator is not None:
        models["D"] = trainer.discriminator
    before = {k: _params(m) for k, m in models.items()}
    trainer.train()
    moved = {k for k, m in models.items() if _moved(before[k], m)}
    assert moved == expected
    logs = {k for h in trainer.state.log_history for k in h}
    name = next(n for n in ("reconstruction", "adversarial", "denoising", "backtranslation") if f"{n}_weight" in losses)
    assert f"{name}_weight" in logs
    if "D" in expected:
        assert {"d_loss", "d_acc_real", "d_acc_fake", "discriminator_reward"} <= logs
    if name == "reconstruction":
        assert "reconstruction_loss" in logs and ("tau" in logs) == (losses.get("reconstruction_update") == "gumbel")


def test_denoising_loss_is_cross_entropy_on_the_noised_input(make_model, tokenizer, domains, tmp_path):
    x, y = domains
    args = _config(tmp_path, denoising_weight="1", word_shuffle=2, word_dropout=0.2, word_blank=0.2)
    trainer = CycleTrainer(make_model("bart", warm=False), args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    batch = {k: v for k, v in trainer.data_collator([x[i] for i in range(4)]).items()}
    rows = TargetDomainSampler(len(y), seed=0).take(4)
    y_batch = tokenizer.pad({"input_ids": [y[i]["input_ids"] for i in rows]}, return_tensors="pt")
    generator = trainer.step_generator(0)
    expected = {}
    for key, model, (ids, mask) in (("x", trainer.reconstructor, (batch["input_ids"], batch["attention_mask"])),
                                    ("y", trainer.model, (y_batch["input_ids"], y_batch["attention_mask"]))):
        noised, noised_mask = trainer.noiser(ids, mask, generator=generator)
        assert not torch.equal(noised[:, : ids.shape[1]], ids[:, : noised.shape[1]])
        labels = ids.masked_fill(mask == 0, -100)
        with torch.no_grad():  # plain cross-entropy of each sequence, averaged
            expected[key] = torch.stack([model(input_ids=noised[i : i + 1], attention_mask=noised_mask[i : i + 1], labels=labels[i : i + 1]).loss
                                         for i in range(4)]).mean()
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    got = {k: trainer._metrics["train"][f"denoising_{k}_loss"][-1] for k in ("x", "y")}
    assert got["x"] == pytest.approx(float(expected["x"]), rel=1e-5)
    assert got["y"] == pytest.approx(float(expected["y"]), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(expected["x"] + expected["y"]), rel=1e-5)


@pytest.mark.parametrize("position", ["decoder", "encoder"])
def test_shared_model_with_direction_tokens(position, make_model, tokenizer, domains, tmp_path):
    family = "mbart" if position == "decoder" else "marian"
    x, y = domains
    args = _config(tmp_path, shared_model=True, x_token=EN, y_token=DE, direction_token_position=position, denoising_weight="1",
                   backtranslation_weight="1", reconstruction_weight="1", reconstruction_update="gumbel")
    trainer = CycleTrainer(make_model(family, warm=False), args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    assert trainer.reconstructor is None and not any(name == "reconstructor" for name in trainer._auxiliaries)
    en, de = tokenizer.convert_tokens_to_ids(EN), tokenizer.convert_tokens_to_ids(DE)
    src = tokenizer(["the bank of peru", "the army of japan signed"], return_tensors="pt", padding=True)
    to_de = trainer.transfer(src.input_ids, src.attention_mask, to="y", max_new_tokens=5)
    to_en = trainer.transfer(src.input_ids, src.attention_mask, to="x", max_new_tokens=5)
    if position == "decoder":  # the language code is forced first, and the source carries its own code
        assert bool((to_de[:, 0] == de).all()) and bool((to_en[:, 0] == en).all())
        ids, _ = trainer.to_y.encoder_input(src.input_ids, src.attention_mask)
        assert bool((ids[:, 0] == en).all()) and trainer.model.generation_config.forced_bos_token_id == de
    else:  # the target's tag leads the source; both directions decode from the one model
        ids, _ = trainer.to_x.encoder_input(src.input_ids, src.attention_mask)
        scores = [trainer._decode(d, src.input_ids, src.attention_mask, 5, None, do_sample=False).logprobs for d in (trainer.to_x, trainer.to_y)]
        assert bool((ids[:, 0] == en).all()) and not torch.equal(*scores)
    before = _params(trainer.model)
    trainer.train()
    assert _moved(before, trainer.model)
    logs = {k for h in trainer.state.log_history for k in h}
    assert {"denoising_x_loss", "backtranslation_y_loss", "reconstruction_loss"} <= logs
    # evaluation: G's teacher-forced loss and generate() on tagged inputs
    pairs = Dataset.from_dict({"input_ids": x["input_ids"][:4], "labels": y["input_ids"][:4]})
    trainer.args.predict_with_generate, trainer.args.generation_max_length = True, 6
    predictions = trainer.predict(pairs)
    assert predictions.metrics["test_loss"] > 0 and predictions.predictions.shape[0] == 4
    if position == "decoder":
        assert bool((torch.as_tensor(predictions.predictions)[:, 1] == de).all())  # after the decoder start


@pytest.mark.parametrize("position", ["encoder", "decoder"])
def test_shared_model_feeds_each_loss_the_tagged_source_and_the_plain_target(position, make_model, tokenizer, domains, tmp_path):
    """What each loss of a shared model reads, on a 2-row batch: the encoder gets the source whole
    with one direction tag in front (the target's tag in encoder mode, the source's in decoder
    mode) and its mask grows by one; the labels are the target (after the forced target tag in
    decoder mode); denoising reads the noised text, back-translation the other direction's output.
    The tags of the two directions differ, so the X and Y terms never swap them."""
    x, y = domains
    args = _config(tmp_path, shared_model=True, x_token=EN, y_token=DE, direction_token_position=position, per_device_train_batch_size=2,
                   denoising_weight="1", backtranslation_weight="1")
    trainer = CycleTrainer(make_model("bart", warm=False), args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    en, de = tokenizer.convert_tokens_to_ids(EN), tokenizer.convert_tokens_to_ids(DE)
    batch = trainer.data_collator([x[i] for i in range(2)])
    y_batch = tokenizer.pad({"input_ids": [y[i]["input_ids"] for i in TargetDomainSampler(len(y), seed=0).take(2)]}, return_tensors="pt")
    generator = trainer.step_generator(0)
    noised = {"x": trainer.noiser(batch["input_ids"], batch["attention_mask"], generator=generator),
              "y": trainer.noiser(y_batch["input_ids"], y_batch["attention_mask"], generator=generator)}
    calls, decodes = [], []
    forward, decode = trainer.model.forward, trainer._decode
    trainer.model.forward = lambda **kw: calls.append(kw) or forward(**kw)
    trainer._decode = lambda *a, **kw: decodes.append(decode(*a, **kw)) or decodes[-1]
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch)
    teacher_forced = [c for c in calls if c.get("input_ids") is not None and c.get("decoder_input_ids") is not None]
    assert len(teacher_forced) == 4 and len(decodes) == 2  # denoising x, y; back-translation x, y; G(x) and R(y) decoded once each
    y_hat, x_hat = decodes
    target_tag = {"x": en, "y": de}
    source_tag = {"x": de, "y": en}  # writing X reads Y, writing Y reads X
    cases = [("x", noised["x"], (batch["input_ids"], batch["attention_mask"])), ("y", noised["y"], (y_batch["input_ids"], y_batch["attention_mask"])),
             ("x", (y_hat.sequences, y_hat.attention_mask), (batch["input_ids"], batch["attention_mask"])),
             ("y", (x_hat.sequences, x_hat.attention_mask), (y_batch["input_ids"], y_batch["attention_mask"]))]
    for i, (call, (to, (src, src_mask), (tgt, tgt_mask))) in enumerate(zip(teacher_forced, cases)):
        tag = target_tag[to] if position == "encoder" else source_tag[to]
        if position == "decoder" and bool((src[:, 0] == tag).all()):  # a back-translation already led by its forced code
            src, src_mask = src[:, 1:], src_mask[:, 1:]
        assert torch.equal(call["input_ids"], torch.cat([torch.full_like(src[:, :1], tag), src], 1))  # tag once, source whole
        assert torch.equal(call["attention_mask"], torch.cat([torch.ones_like(src_mask[:, :1]), src_mask], 1))
        if i < 2:  # the noised text carries no tag of its own (back-translations are the model's output, anything goes)
            assert not bool(torch.isin(call["input_ids"][:, 1:], torch.tensor([en, de])).any())
        labels = tgt.masked_fill(tgt_mask == 0, -100)
        if position == "decoder":
            labels = torch.cat([torch.full_like(labels[:, :1], target_tag[to]), labels], 1)
        assert torch.equal(call["decoder_input_ids"], trainer.model.prepare_decoder_input_ids_from_labels(labels=labels))
    # the source matters: the same targets read from another row's source score differently
    d = trainer.to_x
    with torch.no_grad():
        trainer.model.eval()
        own = trainer._forward(d, batch["input_ids"], batch["attention_mask"], batch["input_ids"], batch["attention_mask"])
        swapped = trainer._forward(d, batch["input_ids"].flip(0), batch["attention_mask"].flip(0), batch["input_ids"], batch["attention_mask"])
    assert not torch.allclose(own, swapped)


def test_resume_from_checkpoint_is_exact(make_model, tokenizer, domains, tmp_path):
    x, y = domains

    def run(out, steps, resume=None, save=False):
        args = _config(out, max_steps=steps, save_strategy="steps" if save else "no", save_steps=1, lr_scheduler_type="constant",
                       reconstruction_weight="1", adversarial_weight="linear:0.5,1,4", denoising_weight="0.5")
        trainer = CycleTrainer(make_model("bart", warm=False), args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1, save=True)
    resumed = run(tmp_path / "b", 2, resume=str(tmp_path / "b" / "checkpoint-1"))
    for a, b in ((straight.model, resumed.model), (straight.reconstructor, resumed.reconstructor),
                 (straight.discriminator, resumed.discriminator)):
        for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.equal(p, q), n
    assert straight.target_sampler.state_dict() == resumed.target_sampler.state_dict()
    assert straight.baselines["reconstruction"].value == resumed.baselines["reconstruction"].value
    # save_model writes G, R and D; each reloads
    resumed.save_model(str(tmp_path / "final"))
    from transformers import AutoModelForSeq2SeqLM

    reloaded = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "final" / "reconstructor"))
    for (n, p), (_, q) in zip(reloaded.named_parameters(), resumed.reconstructor.named_parameters()):
        assert torch.equal(p, q), n
    disc = resumed.auxiliary("discriminator").unwrapped
    assert type(disc).from_pretrained(str(tmp_path / "final" / "discriminator")).conditional is False


@pytest.mark.parametrize("family,update", [("t5", "reinforce"), ("bart", "gumbel")])
def test_gradient_accumulation_is_exact(family, update, make_model, tokenizer, domains, tmp_path):
    x, y = domains

    def run(out, bs, ga):
        args = _config(out, per_device_train_batch_size=bs, gradient_accumulation_steps=ga, do_sample=False, baseline="none",
                       reconstruction_update=update, adversarial_update=update,
                       reconstruction_weight="1", adversarial_weight="1", denoising_weight="1", word_shuffle=0, word_dropout=0.0,
                       word_blank=0.0, discriminator_dropout=0.0, optim="sgd", learning_rate=0.5, reconstructor_optimizer="sgd",
                       discriminator_optimizer="sgd", discriminator_learning_rate=0.5)
        trainer = CycleTrainer(make_model(family, warm=False), args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
        trainer.train()
        return trainer

    one, two = run(tmp_path / "a", 8, 1), run(tmp_path / "b", 4, 2)
    for a, b in ((one.model, two.model), (one.reconstructor, two.reconstructor), (one.discriminator, two.discriminator)):
        for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.allclose(p, q, atol=1e-6), n


def test_one_dataset_with_a_domain_column(make_model, tokenizer, domains, tmp_path):
    x, y = domains
    both = Dataset.from_dict({"input_ids": list(x["input_ids"]) + list(y["input_ids"]), "domain": ["x"] * len(x) + ["y"] * len(y)})
    trainer = CycleTrainer(make_model("bart", warm=False), _config(tmp_path, denoising_weight="1"), train_dataset=both, processing_class=tokenizer)
    assert len(trainer.train_dataset) == len(x) and list(trainer.target_domain_dataset["input_ids"]) == list(y["input_ids"])
    ids, mask = trainer.target_batch()
    assert ids.shape[0] == 4 and all(row in y["input_ids"] for row in [r[m.bool()].tolist() for r, m in zip(ids, mask)])


def test_supervised_pairs_train_both_directions_and_unpaired_rows_are_skipped(make_model, tokenizer, corpus, domains, tmp_path):
    _, y = domains
    rows = corpus[:16]
    paired = Dataset.from_dict({"input_ids": tokenizer([r["article"] for r in rows], truncation=True, max_length=24).input_ids,
                                "labels": tokenizer([r["headline"] for r in rows], truncation=True, max_length=10).input_ids[:8] + [[]] * 8})
    trainer = CycleTrainer(make_model("bart", warm=False), _config(tmp_path, supervised_weight="1"), train_dataset=paired, target_domain_dataset=y,
                           processing_class=tokenizer)
    before = {"G": _params(trainer.model), "R": _params(trainer.reconstructor)}
    trainer.train()
    assert _moved(before["G"], trainer.model) and _moved(before["R"], trainer.reconstructor)
    assert {"supervised_x_loss", "supervised_y_loss"} <= {k for h in trainer.state.log_history for k in h}


def test_lora_on_both_models_and_a_discriminator_with_its_own_vocabulary(make_model, tokenizer, corpus, domains, tmp_path):
    from peft import LoraConfig

    from hf_seqgan.discriminators import build_default_discriminator
    from hf_seqgan.tiny import train_tokenizer

    x, y = domains
    other = train_tokenizer([r["headline"] for r in corpus], vocab_size=300)  # D reads texts: a text round trip
    lora = dict(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    trainer = CycleTrainer(make_model("bart", warm=False), _config(tmp_path, reconstruction_weight="1", adversarial_weight="1"), train_dataset=x,
                           target_domain_dataset=y, processing_class=tokenizer, peft_config=LoraConfig(**lora),
                           reconstructor_peft_config=LoraConfig(**lora), discriminator=build_default_discriminator(other, conditional=False))
    assert trainer._d_reward.text_path
    models = {"G": trainer.model, "R": trainer.reconstructor, "D": trainer.discriminator}
    before = {k: _params(m) for k, m in models.items()}
    trainer.train()
    for key in ("G", "R"):  # only the adapters move
        moved = {n for n, p in models[key].named_parameters() if not torch.equal(before[key][n], p)}
        assert moved and all("lora_" in n for n in moved), (key, sorted(moved)[:3])
    assert _moved(before["D"], trainer.discriminator)
    trainer.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / "reconstructor" / "adapter_config.json").exists()


def test_reconstruction_loss_drops_on_a_copy_task(make_model, tokenizer, corpus, tmp_path):
    """X and Y are both headlines: G may copy, R copies back; R(G(x)) must learn to recover x."""
    heads = tokenizer([r["headline"] for r in corpus[:64]], truncation=True, max_length=10).input_ids
    data = Dataset.from_dict({"input_ids": heads})
    args = _config(tmp_path, max_steps=20, per_device_train_batch_size=8, learning_rate=1e-2, reconstruction_weight="1", max_new_tokens=10)
    trainer = CycleTrainer(make_model("bart", warm=False), args, train_dataset=data, target_domain_dataset=data, processing_class=tokenizer)
    trainer.train()
    losses = [h["reconstruction_loss"] for h in trainer.state.log_history if "reconstruction_loss" in h]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


def test_clear_errors(make_model, tokenizer, domains, tmp_path):
    x, y = domains
    model = make_model("bart", warm=False)
    with pytest.raises(ValueError, match="no target-domain"):
        CycleTrainer(model, _config(tmp_path, denoising_weight="1"), train_dataset=x, processing_class=tokenizer)
    with pytest.raises(ValueError, match="denoising_weight"):
        _config(tmp_path, denoising_weight="-1")
    with pytest.raises(ValueError, match="Every loss weight is 0"):
        _config(tmp_path, supervised_weight="0")
    with pytest.raises(ValueError, match="needs x_token and y_token"):
        _config(tmp_path, shared_model=True, denoising_weight="1")
    with pytest.raises(ValueError, match="reconstruction_update='sometimes'"):
        _config(tmp_path, reconstruction_update="sometimes")
    bigger = make_model("bart", warm=False, vocab_size=len(tokenizer) + 8)
    with pytest.raises(ValueError, match="one vocabulary"):
        CycleTrainer(model, _config(tmp_path, reconstruction_weight="1", reconstruction_update="gumbel"), train_dataset=x,
                     target_domain_dataset=y, reconstructor=bigger, processing_class=tokenizer)
    from hf_seqgan.discriminators import build_default_discriminator

    with pytest.raises(ValueError, match="judges Y-domain texts alone"):
        CycleTrainer(model, _config(tmp_path, adversarial_weight="1"), train_dataset=x, target_domain_dataset=y, processing_class=tokenizer,
                     discriminator=build_default_discriminator(tokenizer, conditional=True))
    with pytest.raises(ValueError, match="adversarial_weight is 0 throughout"):
        CycleTrainer(model, _config(tmp_path, denoising_weight="1"), train_dataset=x, target_domain_dataset=y, processing_class=tokenizer,
                     discriminator=build_default_discriminator(tokenizer, conditional=False))
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        CycleTrainer(model, _config(tmp_path, shared_model=True, x_token="<2x>", y_token="<2y>", denoising_weight="1"), train_dataset=x,
                     target_domain_dataset=y, processing_class=tokenizer)
    with pytest.raises(ValueError, match="no `input_ids`"):
        CycleTrainer(model, _config(tmp_path, denoising_weight="1"), train_dataset=x, target_domain_dataset=Dataset.from_dict({"text": ["a"]}),
                     processing_class=tokenizer)
    with pytest.raises(ValueError, match="holds"):
        CycleTrainer(model, _config(tmp_path, denoising_weight="1"), processing_class=tokenizer,
                     train_dataset=Dataset.from_dict({"input_ids": x["input_ids"][:2], "domain": ["x", "z"]}))


@pytest.mark.parametrize("scale,invariant", [("batch", True), ("none", False)])
def test_scale_rewards_makes_the_adversarial_pull_independent_of_the_reward_scale(scale, invariant, make_model, tokenizer, domains, tmp_path):
    """With scale_rewards='batch' one step on a reward r and one on 100 r + 3 move G identically
    (next to the denoising term, whose pull does not change); with 'none' they do not."""
    x, y = domains
    moved = []
    for factor, shift in ((1.0, 0.0), (100.0, 3.0)):
        model = make_model("bart", warm=False)
        args = _config(tmp_path, denoising_weight="1", adversarial_weight="1", discriminator_type="classifier", scale_rewards=scale)
        trainer = CycleTrainer(model, args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
        reward_class = type(trainer._d_reward)

        class Affine(reward_class):
            def __call__(self, *a, **kw):  # an untrained D scores every row 0.5: give the rewards a known spread
                reward = super().__call__(*a, **kw)
                return factor * (reward + 0.1 * torch.arange(len(reward), dtype=reward.dtype)) + shift

        trainer._d_reward.__class__ = Affine
        trainer.train()
        moved.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(moved[0], moved[1], atol=1e-5) == invariant  # measured: 3e-6 with "batch", 2e-3 (two Adam steps of lr) without
    with pytest.raises(ValueError, match="scale_rewards='group'"):
        _config(tmp_path, scale_rewards="group")


# ---------------------------------------------------------------------- the latent adversary
def _straight_and_resumed(make_model, tokenizer, domains, tmp_path, **common):
    """Two trainers of ``common``: one run straight through, one saved at step 2 and resumed from there."""
    x, y = domains

    def trainer(out, **extra):
        return CycleTrainer(make_model("bart", warm=False), _config(out, **common, **extra), train_dataset=x, target_domain_dataset=y,
                            processing_class=tokenizer)

    full = trainer(tmp_path / "a")
    full.train()
    trainer(tmp_path / "b", save_strategy="steps", save_steps=2).train()
    resumed = trainer(tmp_path / "b")
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-2"))
    return full, resumed


def _encoder_params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{n}".count(".encoder.") and "embed" not in n and "shared" not in n}


@pytest.mark.parametrize("family", ["bart", "t5", "marian"])
def test_latent_adversary_moves_the_encoders_and_its_discriminator_only(make_model, tokenizer, domains, tmp_path, family):
    x, y = domains
    args = _config(tmp_path, latent_adversarial_weight="1", max_steps=3, learning_rate=1e-2, latent_discriminator_learning_rate=1e-2)
    model = make_model(family, warm=False)
    trainer = CycleTrainer(model, args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    g_enc, r_enc = _encoder_params(trainer.model), _encoder_params(trainer.reconstructor)
    g_dec = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if f".{n}".count(".decoder.") and "embed" not in n}
    assert g_enc and r_enc and g_dec
    d_before = _params(trainer.auxiliary("latent_discriminator").unwrapped)
    trainer.train()
    assert _moved(d_before, trainer.auxiliary("latent_discriminator").unwrapped)
    assert any(not torch.equal(g_enc[n], p) for n, p in trainer.model.named_parameters() if n in g_enc)  # G's encoder, by the X states
    assert any(not torch.equal(r_enc[n], p) for n, p in trainer.reconstructor.named_parameters() if n in r_enc)  # R's, by the Y states
    assert all(torch.equal(g_dec[n], p) for n, p in trainer.model.named_parameters() if n in g_dec)  # the term reads no decoder
    logged = [h for h in trainer.state.log_history if "latent_d_acc" in h]
    assert len(logged) == 3 and all(0 <= h["latent_d_acc"] <= 1 and "latent_adversarial_x_loss" in h for h in logged)


def test_latent_adversary_is_off_by_default_and_resumes_exactly(make_model, tokenizer, domains, tmp_path):
    x, y = domains
    plain = CycleTrainer(make_model("bart", warm=False), _config(tmp_path / "p", denoising_weight="1"), train_dataset=x, target_domain_dataset=y,
                         processing_class=tokenizer)
    assert "latent_discriminator" not in plain._auxiliaries
    full, resumed = _straight_and_resumed(make_model, tokenizer, domains, tmp_path, latent_adversarial_weight="0.5", denoising_weight="1", max_steps=4)
    for a, b in ((full.model, resumed.model), (full.reconstructor, resumed.reconstructor),
                 (full.auxiliary("latent_discriminator").unwrapped, resumed.auxiliary("latent_discriminator").unwrapped)):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q)


# ---------------------------------------------------------------------- the source-domain adversary (D_X on R's outputs)
@pytest.mark.parametrize("family,update", [("marian", "reinforce"), ("bart", "gumbel")])
def test_source_adversary_moves_the_reconstructor_and_its_discriminator_only(family, update, make_model, tokenizer, domains, tmp_path):
    x, y = domains
    args = _config(tmp_path, source_adversarial_weight="1", adversarial_update=update, discriminator_type="classifier")
    trainer = CycleTrainer(make_model(family, warm=False), args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    assert trainer.discriminator is None and trainer.source_discriminator is not None
    models = {"G": trainer.model, "R": trainer.reconstructor, "D_X": trainer.source_discriminator}
    before = {k: _params(m) for k, m in models.items()}
    trainer.train()
    assert {k for k, m in models.items() if _moved(before[k], m)} == {"R", "D_X"}
    logs = {k for h in trainer.state.log_history for k in h}
    assert {"source_d_loss", "source_d_acc", "source_d_heldout_auc", "source_discriminator_reward", "source_adversarial_weight"} <= logs
    assert ("source_pg_loss" in logs) == (update == "reinforce") and "d_loss" not in logs
    trainer.save_model(str(tmp_path / "final"))  # D_X is saved in its own folder and reloads
    assert type(trainer.source_discriminator).from_pretrained(str(tmp_path / "final" / "source_discriminator")).conditional is False


@pytest.mark.parametrize("shared", [True, False], ids=["shared-model", "two-models"])
@pytest.mark.parametrize("update", ["reinforce", "gumbel"])
def test_source_adversary_is_the_adversarial_term_with_the_domains_swapped(shared, update, make_model, tokenizer, tmp_path):
    """R's term against D_X on (X, Y) is exactly G's term against D on (Y, X): a run with
    source_adversarial_weight moves R (the shared model) and D_X as a run with adversarial_weight on the
    swapped domains moves G and D (greedy decodes and whole-dataset batches, so that the rows' order
    cannot matter)."""
    x = tokenizer(["the bank of peru said on monday", "the army of japan signed a deal", "oil prices fell", "a storm hit the coast"]).input_ids
    y = tokenizer(["peru bank says", "japan signs deal", "oil falls", "storm hits coast"]).input_ids
    x, y = Dataset.from_dict({"input_ids": x}), Dataset.from_dict({"input_ids": y})
    common = dict(adversarial_update=update, discriminator_type="classifier", discriminator_dropout=0.0, do_sample=False, baseline="none",
                  optim="sgd", learning_rate=0.5, reconstructor_optimizer="sgd", discriminator_optimizer="sgd", discriminator_learning_rate=0.5,
                  max_new_tokens=6, reconstruction_max_new_tokens=6, min_new_tokens=3)  # an untrained model's greedy output is EOS alone
    tags = dict(shared_model=True, direction_token_position="decoder") if shared else {}
    source = CycleTrainer(make_model("mbart"), _config(tmp_path / "a", source_adversarial_weight="1", **common, **tags,
                                                                   **(dict(x_token=EN, y_token=DE) if shared else {})),
                          train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    swapped = CycleTrainer(make_model("mbart"), _config(tmp_path / "b", adversarial_weight="1", **common, **tags,
                                                                    **(dict(x_token=DE, y_token=EN) if shared else {})),
                           train_dataset=y, target_domain_dataset=x, processing_class=tokenizer)
    start = _params(swapped.model)
    source.train(), swapped.train()
    moved_source = source.model if shared else source.reconstructor
    assert _moved(start, swapped.model)
    for (n, p), (_, q) in zip(moved_source.named_parameters(), swapped.model.named_parameters()):
        torch.testing.assert_close(p, q, msg=n)
    for (n, p), (_, q) in zip(source.source_discriminator.named_parameters(), swapped.discriminator.named_parameters()):
        torch.testing.assert_close(p, q, msg=n)
    if not shared:
        assert not _moved(start, source.model)  # G is not part of R's term


def test_source_adversary_resumes_exactly_and_is_refused_without_a_weight(make_model, tokenizer, domains, tmp_path):
    x, y = domains
    full, resumed = _straight_and_resumed(make_model, tokenizer, domains, tmp_path, source_adversarial_weight="0.5", adversarial_weight="1",
                                          discriminator_type="classifier", denoising_weight="1", max_steps=3, lr_scheduler_type="constant")
    for a, b in ((full.model, resumed.model), (full.reconstructor, resumed.reconstructor), (full.discriminator, resumed.discriminator),
                 (full.source_discriminator, resumed.source_discriminator)):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    assert full.baselines["source_adversarial"].value == resumed.baselines["source_adversarial"].value is not None
    given = resumed.source_discriminator
    with pytest.raises(ValueError, match="source_discriminator was given but source_adversarial_weight is 0"):
        CycleTrainer(make_model("bart", warm=False), _config(tmp_path, denoising_weight="1"), train_dataset=x, target_domain_dataset=y,
                     processing_class=tokenizer, source_discriminator=given)


def _stuttering_training_decodes(make_model, tokenizer, domains, tmp_path, **config):
    """Train a model forced to repeat " the" (through final_logits_bias) with a back-translation and an
    adversarial term; returns that token's id and the sequences of every decode of training, after
    checking there were three (two back-translations, the adversarial sample) and that pg_loss stayed finite."""
    x, y = domains
    model = make_model("bart", warm=False)
    the = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" the"))[0]
    model.final_logits_bias.data[0, the] = 30.0
    trainer = CycleTrainer(model, _config(tmp_path, adversarial_weight="1", discriminator_type="classifier", backtranslation_weight="1", **config),
                           train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    decodes = []
    original = trainer._decode_rows

    def spy(*a, **kw):
        out = original(*a, **kw)
        decodes.append(out.sequences)
        return out

    trainer._decode_rows = spy
    trainer.train()
    assert len(decodes) == 3
    assert all(torch.isfinite(torch.tensor(h["pg_loss"])) for h in trainer.state.log_history if "pg_loss" in h)
    return the, decodes


def test_training_no_repeat_ngram_size_blocks_repeats_in_every_training_decode(make_model, tokenizer, domains, tmp_path):
    """The stuttering model decodes its token once per output in training when n-grams of size 1 are blocked."""
    seen = []
    for size in (0, 1):
        the, decodes = _stuttering_training_decodes(make_model, tokenizer, domains, tmp_path, training_no_repeat_ngram_size=size)
        seen.append(max(int((d == the).sum(-1).max()) for d in decodes))
    assert seen[0] > 1 and seen[1] == 1
    with pytest.raises(ValueError, match="training_no_repeat_ngram_size must be an integer >= 0"):
        _config(tmp_path, denoising_weight="1", training_no_repeat_ngram_size=-1)


def test_training_no_doubled_tokens_reaches_every_training_decode(make_model, tokenizer, domains, tmp_path):
    """The same model: with training_no_doubled_tokens no decode of training holds its token twice in a row."""
    doubled = []
    for flag in (False, True):
        the, decodes = _stuttering_training_decodes(make_model, tokenizer, domains, tmp_path, training_no_doubled_tokens=flag)
        doubled.append(sum(int(((d[:, 1:] == d[:, :-1]) & (d[:, 1:] == the)).sum()) for d in decodes))
    assert doubled[0] > 0 and doubled[1] == 0
    with pytest.raises(ValueError, match="training_no_doubled_tokens must be True or False"):
        _config(tmp_path, denoising_weight="1", training_no_doubled_tokens=1)


# ---------------------------------------------------------------------- the KL anchor to the starting G
@pytest.mark.parametrize("update", ["reinforce", "gumbel"])
def test_kl_coef_keeps_a_frozen_start_and_its_gradient_lowers_the_kl(update, make_model, tokenizer, domains, source_batch, tmp_path):
    """kl_coef keeps a frozen copy of the starting G. While G equals it the k3 estimate and its
    gradient are 0 (a first step equals the run without it); once G moves it is positive, and a
    gradient step on it alone lowers it on the same decoded tokens."""
    x, y = domains
    common = dict(adversarial_weight="1", adversarial_update=update, discriminator_type="classifier", lr_scheduler_type="constant")

    def run(kl, steps):
        trainer = CycleTrainer(make_model("bart", warm=False), _config(tmp_path, kl_coef=kl, max_steps=steps, **common), train_dataset=x,
                               target_domain_dataset=y, processing_class=tokenizer)
        trainer.train()
        return trainer

    plain, first = run(0.0, 1), run(1.0, 1)
    assert plain.ref_model is None and "kl" not in {k for h in plain.state.log_history for k in h}
    for (n, p), (_, q) in zip(plain.model.named_parameters(), first.model.named_parameters()):
        torch.testing.assert_close(p, q, msg=n)
    anchored = run(1.0, 4)
    kls = [h["kl"] for h in anchored.state.log_history if "kl" in h]
    assert len(kls) == 4 and kls[0] == 0.0 and all(k >= 0 for k in kls) and kls[-1] > 0, kls
    start = make_model("bart", warm=False)
    assert not anchored.ref_model.training and not any(p.requires_grad for p in anchored.ref_model.parameters())
    for (n, p), (_, q) in zip(start.named_parameters(), anchored.ref_model.named_parameters()):
        assert torch.equal(p, q), n  # the anchor does not train
    assert _moved(_params(start), anchored.model)

    ids, mask = source_batch.input_ids, source_batch.attention_mask
    fakes = anchored._decode(anchored.to_y, ids, mask, 6, torch.Generator().manual_seed(0), do_sample=True)
    before = anchored._kl_to_start(anchored.to_y, ids, mask, fakes)
    anchored.model.zero_grad()
    before.backward()
    with torch.no_grad():
        for p in anchored.model.parameters():
            if p.grad is not None:
                p -= 1e-2 * p.grad
        after = anchored._kl_to_start(anchored.to_y, ids, mask, fakes)
    assert 0 < after < before, (float(before), float(after))


def test_kl_coef_resumes_exactly_with_its_start_and_is_validated(make_model, tokenizer, domains, tmp_path):
    x, y = domains
    common = dict(adversarial_weight="1", discriminator_type="classifier", denoising_weight="1", max_steps=3, lr_scheduler_type="constant")
    full, resumed = _straight_and_resumed(make_model, tokenizer, domains, tmp_path, kl_coef=0.5, **common)
    for a, b in ((full.model, resumed.model), (full.ref_model, resumed.ref_model), (full.discriminator, resumed.discriminator)):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    # the anchor comes from the checkpoint, not from the model the resumed trainer was built with
    other = CycleTrainer(make_model("bart", warm=False, seed=1), _config(tmp_path / "c", kl_coef=0.5, **common), train_dataset=x,
                         target_domain_dataset=y, processing_class=tokenizer)
    other.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-2"))
    for p, q in zip(full.ref_model.parameters(), other.ref_model.parameters()):
        assert torch.equal(p, q)
    CycleTrainer(make_model("bart", warm=False), _config(tmp_path / "d", save_strategy="steps", save_steps=1, **{**common, "max_steps": 1}),
                 train_dataset=x, target_domain_dataset=y, processing_class=tokenizer).train()
    with pytest.raises(ValueError, match="the checkpoint has no starting model"):
        CycleTrainer(make_model("bart", warm=False), _config(tmp_path / "d", kl_coef=0.5, **common), train_dataset=x, target_domain_dataset=y,
                     processing_class=tokenizer).train(resume_from_checkpoint=str(tmp_path / "d" / "checkpoint-1"))
    for bad in (-0.1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="kl_coef must be a finite number >= 0"):
            _config(tmp_path, kl_coef=bad, adversarial_weight="1")
    with pytest.raises(ValueError, match="their weights are 0"):
        _config(tmp_path, kl_coef=0.1, denoising_weight="1")


def test_kl_coef_with_lora_takes_the_base_model_as_its_start(make_model, tokenizer, domains, tmp_path):
    from peft import LoraConfig

    x, y = domains
    lora = LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    trainer = CycleTrainer(make_model("bart", warm=False), _config(tmp_path, kl_coef=1.0, adversarial_weight="1", discriminator_type="classifier",
                                                                   max_steps=2), train_dataset=x, target_domain_dataset=y,
                           processing_class=tokenizer, peft_config=lora)
    assert trainer.ref_model is None  # no copy: the adapters are switched off
    trainer.train()
    kls = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    assert len(kls) == 2 and all(k > 0 for k in kls), kls  # random adapters: G differs from its base from the start


@pytest.mark.parametrize("shared", [True, False], ids=["shared-model", "two-models"])
def test_kl_coef_anchors_the_source_adversary_to_the_starting_reconstructor(shared, make_model, tokenizer, domains, tmp_path):
    """With the source adversary alone, kl_coef anchors R's decodes (y -> x): to the one copy of a
    shared model, or to a copy of the starting R; G (two models) stays where it was."""
    x, y = domains
    tags = dict(shared_model=True, direction_token_position="decoder", x_token=EN, y_token=DE) if shared else {}
    args = _config(tmp_path, source_adversarial_weight="1", discriminator_type="classifier", kl_coef=1.0, max_steps=3, **tags)
    trainer = CycleTrainer(make_model("mbart" if shared else "bart", warm=False), args, train_dataset=x, target_domain_dataset=y,
                           processing_class=tokenizer)
    assert (trainer.ref_reconstructor is None) == shared and trainer.ref_model is not None
    start_g, start_r = _params(trainer.model), _params(trainer.to_x.model)
    trainer.train()
    kls = [h["source_kl"] for h in trainer.state.log_history if "source_kl" in h]
    assert len(kls) == 3 and kls[0] == 0.0 and kls[-1] > 0, kls
    assert "kl" not in {k for h in trainer.state.log_history for k in h}  # G's own decodes are not part of this run
    anchor = trainer.ref_model if shared else trainer.ref_reconstructor
    for n, p in anchor.named_parameters():
        assert torch.equal(start_r[n], p), n
    assert _moved(start_r, trainer.to_x.model)
    if not shared:
        assert not _moved(start_g, trainer.model)


# ---------------------------------------------------------------------- each domain's vocabulary
def test_domain_vocabulary_ratio_keeps_every_decode_in_its_domains_tokens(make_model, tokenizer, domains, source_batch, tmp_path):
    """With domain_vocabulary_ratio each direction suppresses the tokens rare in its output domain
    (domain_suppressed_tokens on the two training sets, special tokens kept); the training decodes
    and transfer() then never emit them, even when the model's logits favour one (a bias on a
    suppressed token makes the unrestricted greedy decode emit it at every step); the lists are saved."""
    import json

    from hf_seqgan.directions import domain_suppressed_tokens
    from hf_seqgan.recipes import domain_vocabulary, generate_texts

    x, y = domains
    args = _config(tmp_path, backtranslation_weight="1", domain_vocabulary_ratio=0.2, max_steps=2)
    trainer = CycleTrainer(make_model("bart", warm=False), args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    size = trainer.model.get_output_embeddings().weight.shape[0]
    specials = set(tokenizer.all_special_ids)
    expected_y = domain_suppressed_tokens(y["input_ids"], x["input_ids"], size, ratio=0.2, keep=specials)
    assert trainer.to_y.suppress_tokens == expected_y and not specials & set(expected_y)
    assert trainer.to_x.suppress_tokens == domain_suppressed_tokens(x["input_ids"], y["input_ids"], size, ratio=0.2, keep=specials)
    headline_words = {t for row in y["input_ids"] for t in row}
    article_only = {t for row in x["input_ids"] for t in row} - headline_words
    assert article_only and article_only <= set(expected_y)  # X's own words are never written into Y
    assert headline_words - set(expected_y)  # Y's frequent words are kept
    trainer.train()

    banned = expected_y[len(expected_y) // 2]
    off = CycleTrainer(make_model("bart", warm=False), _config(tmp_path / "off", backtranslation_weight="1"), train_dataset=x,
                       target_domain_dataset=y, processing_class=tokenizer)
    assert off.to_y.suppress_tokens is None and domain_vocabulary(off) == {}
    for model in (off.model, trainer.model):
        with torch.no_grad():
            model.final_logits_bias[0, banned] = 50.0
    free = off.transfer(source_batch.input_ids, source_batch.attention_mask, to="y", max_new_tokens=6)
    assert bool((free[:, 1:] == banned).all())  # the bias wins every step of an unrestricted decode
    out = trainer.transfer(source_batch.input_ids, source_batch.attention_mask, to="y", max_new_tokens=6)
    assert not set(out.flatten().tolist()) & set(expected_y)
    out_x = trainer.transfer(source_batch.input_ids, source_batch.attention_mask, to="x", max_new_tokens=6, do_sample=True,
                             generator=torch.Generator().manual_seed(0))
    assert not set(out_x.flatten().tolist()) & set(trainer.to_x.suppress_tokens)
    decode = dict(max_source_length=24, max_new_tokens=4)
    free_text = generate_texts(trainer.model, tokenizer, ["the bank of peru"], **decode)[0]
    assert free_text == tokenizer.decode([banned] * 4, skip_special_tokens=True).strip()
    assert generate_texts(trainer.model, tokenizer, ["the bank of peru"], **decode, **domain_vocabulary(trainer, to="y"))[0] != free_text

    trainer.save_model(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "domain_vocabulary.json").read_text())
    assert saved["suppress_tokens_y"] == expected_y and saved["suppress_tokens_x"] == trainer.to_x.suppress_tokens


def test_domain_vocabulary_ratio_is_validated(make_model, tokenizer, domains, tmp_path):
    x, _ = domains
    for bad in (-0.1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="domain_vocabulary_ratio must be a finite number >= 0"):
            _config(tmp_path, denoising_weight="1", domain_vocabulary_ratio=bad)
    # one corpus as both domains: no token is 2x as frequent in one as in the other
    with pytest.raises(ValueError, match="leaves no ordinary token to decode into X: lower it"):
        CycleTrainer(make_model("bart", warm=False), _config(tmp_path, denoising_weight="1", domain_vocabulary_ratio=2.0), train_dataset=x,
                     target_domain_dataset=x, processing_class=tokenizer)
