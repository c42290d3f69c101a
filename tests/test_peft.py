"""PEFT in every trainer: LoRA on the generator (and the discriminator), sensible target modules for
families peft has no default for, adapters saved by save_model, reloaded with peft's Auto classes
(exactly) and merged.

Offline, ``AutoPeftModel*.from_pretrained`` loads the base model named in ``adapter_config.json``
(``base_model_name_or_path``), so the tests save the base model to a local folder and load it from
there before training: that folder's path is what the adapter records.
"""

import pytest
import torch
from datasets import Dataset
from peft import AutoPeftModelForSeq2SeqLM, AutoPeftModelForSequenceClassification, LoraConfig, PeftModel
from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

from hf_seqgan.discriminators import SequenceDiscriminator, build_default_discriminator
from hf_seqgan.trainers._base import apply_peft, with_default_targets
from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer
from hf_seqgan.trainers.scheduled_sampling import ScheduledSamplingConfig, ScheduledSamplingTrainer

from .conftest import FAMILIES

QUIET = dict(use_cpu=True, disable_tqdm=True, report_to="none", per_device_train_batch_size=4, logging_steps=1, save_strategy="no",
             max_steps=1, learning_rate=5e-2)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_targets_for_every_family(make_model, family):
    model = make_model(family, warm=False)
    config = LoraConfig(task_type="SEQ_2_SEQ_LM", r=4)
    chosen = with_default_targets(model, config)
    if family in ("bart", "t5"):  # peft's own defaults
        assert chosen is config
    else:  # Marian, mBART, Pegasus: peft 0.21 has none and would raise
        assert chosen.target_modules == {"q_proj", "v_proj"} or sorted(chosen.target_modules) == ["q_proj", "v_proj"]
        assert config.target_modules is None  # the user's config is left alone
    peft_model = apply_peft(model, config)
    wrapped = {name.split(".lora_A")[0].split(".")[-1] for name, _ in peft_model.named_parameters() if "lora_A" in name}
    assert wrapped == ({"q", "v"} if family == "t5" else {"q_proj", "v_proj"})
    explicit = with_default_targets(model, LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["fc1"]))
    assert explicit.target_modules == {"fc1"}


def _data(tokenizer, corpus):
    pairs = corpus[:16]
    return Dataset.from_dict({"input_ids": [tokenizer(p["article"]).input_ids[:40] for p in pairs],
                              "labels": [tokenizer(p["headline"]).input_ids[:10] for p in pairs]})


def _local_base(model, folder, loader):
    """Save the base model and load it back, so that its name_or_path is a local folder."""
    model.save_pretrained(folder)
    return loader.from_pretrained(folder)


def _logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("family, method", [("bart", "scheduled_sampling"), ("marian", "adversarial")])
def test_adapters_save_reload_and_merge(make_model, tokenizer, corpus, source_batch, tmp_path, family, method):
    base = _local_base(make_model(family, warm=False), tmp_path / "base", AutoModelForSeq2SeqLM)
    before = _logits(base, {**source_batch, "decoder_input_ids": source_batch["input_ids"][:, :6]})
    lora = LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8)
    out = tmp_path / "run"
    if method == "scheduled_sampling":
        args = ScheduledSamplingConfig(str(out), gold_probability="0.5", **QUIET)
        trainer = ScheduledSamplingTrainer(base, args, train_dataset=_data(tokenizer, corpus), processing_class=tokenizer, peft_config=lora)
    else:
        classifier = _local_base(build_default_discriminator(tokenizer, hidden_size=32, num_layers=1, dropout=0.0).model,
                                 tmp_path / "d_base", AutoModelForSequenceClassification)
        args = AdversarialConfig(str(out), discriminator_learning_rate=5e-2, **QUIET)
        trainer = AdversarialTrainer(base, args, discriminator=SequenceDiscriminator(classifier, tokenizer), train_dataset=_data(tokenizer, corpus),
                                     processing_class=tokenizer, peft_config=lora,
                                     discriminator_peft_config=LoraConfig(task_type="SEQ_CLS", r=4))
    assert isinstance(trainer.model, PeftModel)
    trainer.train()
    trainer.save_model()

    batch = {**source_batch, "decoder_input_ids": source_batch["input_ids"][:, :6]}
    trained = _logits(trainer.model, batch)
    assert not torch.allclose(trained, before)  # the adapters learned something
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    assert not (out / "model.safetensors").exists()  # the adapter alone, not the base weights
    reloaded = AutoPeftModelForSeq2SeqLM.from_pretrained(out)
    assert reloaded.peft_config["default"].base_model_name_or_path == str(tmp_path / "base")
    assert torch.equal(_logits(reloaded, batch), trained)
    merged = reloaded.merge_and_unload()
    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(_logits(merged, batch), trained, atol=1e-5, rtol=1e-5)
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and "AutoPeftModelForSeq2SeqLM" in card and "lora" in card

    if method == "adversarial":
        folder = out / "discriminator"
        assert {"adapter_config.json", "adapter_model.safetensors", "hf_seqgan_discriminator.json", "README.md"} <= {p.name for p in folder.iterdir()}
        d_inputs = tokenizer(["a headline", "another one"], return_tensors="pt", padding=True)
        d_trained = _logits(trainer.discriminator.model, d_inputs)
        d_reloaded = AutoPeftModelForSequenceClassification.from_pretrained(folder)
        assert torch.equal(_logits(d_reloaded, d_inputs), d_trained)
        torch.testing.assert_close(_logits(d_reloaded.merge_and_unload(), d_inputs), d_trained, atol=1e-5, rtol=1e-5)
        assert "library_name: peft" in (folder / "README.md").read_text()


def test_peft_errors(make_model):
    model = make_model("marian", warm=False)
    with pytest.raises(TypeError, match="peft.PeftConfig"):
        apply_peft(model, {"r": 4})
    wrapped = apply_peft(model, LoraConfig(task_type="SEQ_2_SEQ_LM", r=2))
    with pytest.raises(ValueError, match="already a PeftModel"):
        apply_peft(wrapped, LoraConfig(task_type="SEQ_2_SEQ_LM", r=2))
