"""What users take for granted from a Trainer: a checkpoint runs no code, non-finite values stop
loudly, bad input gets a clear error, a half-written checkpoint is skipped, a LoRA run on a model
built from a config reloads offline."""

import logging
import os
import shutil

import pytest
import torch
from datasets import Dataset
from peft import AutoPeftModelForSeq2SeqLM, LoraConfig
from transformers import TrainerCallback

from hf_seqgan.trainers import (
    AdversarialConfig,
    AdversarialTrainer,
    ProfessorForcingConfig,
    ProfessorForcingTrainer,
    ScheduledSamplingConfig,
    ScheduledSamplingTrainer,
)
from hf_seqgan.trainers._base import AUXILIARY_STATE_NAME, NonFiniteTrainingError

QUIET = dict(report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, per_device_train_batch_size=8, seed=0)


def _data(tokenizer, corpus, n=32):
    enc = tokenizer([r["article"] for r in corpus[:n]], truncation=True, max_length=32)
    labels = tokenizer([r["headline"] for r in corpus[:n]], truncation=True, max_length=10).input_ids
    return Dataset.from_dict({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": labels})


def _ss(model, tokenizer, data, tmp_path, **kw):
    args = ScheduledSamplingConfig(str(tmp_path), **{**QUIET, "max_steps": 4, "save_strategy": "no", **kw})
    return ScheduledSamplingTrainer(model, args, train_dataset=data, processing_class=tokenizer)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------------- checkpoints run no code
MARKER = {}


def _side_effect(path):
    with open(path, "w") as f:
        f.write("code ran")
    return {}


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_side_effect, (self.path,))


def test_resume_refuses_a_state_file_that_runs_code(make_model, tokenizer, corpus, tmp_path):
    data = _data(tokenizer, corpus)
    trainer = _ss(make_model("bart"), tokenizer, data, tmp_path / "run", max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    state_file = checkpoint / AUXILIARY_STATE_NAME
    assert state_file.is_file()
    marker = tmp_path / "pwned"
    torch.save({"auxiliaries": {}, "extra": _Payload(str(marker))}, state_file)

    resumed = _ss(make_model("bart"), tokenizer, data, tmp_path / "run", max_steps=4)
    with pytest.raises(ValueError, match="Refusing to load .*may run code"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert not marker.exists()


# ---------------------------------------------------------------------- non-finite values
def test_a_nan_reward_row_is_dropped_and_the_baseline_stays_finite(make_model, tokenizer, corpus, tmp_path, caplog):
    def nan_for_first_row(sources, outputs, references):
        return [float("nan")] + [float(len(o)) for o in outputs[1:]]

    args = AdversarialConfig(str(tmp_path), **{**QUIET, "max_steps": 3, "save_strategy": "no"}, use_discriminator=False, max_new_tokens=6,
                             mle_weight="0", learning_rate=1e-2, logging_steps=1)
    trainer = AdversarialTrainer(make_model("bart"), args=args, train_dataset=_data(tokenizer, corpus), processing_class=tokenizer,
                                 reward_funcs=[nan_for_first_row])
    before = _params(trainer.model)
    with caplog.at_level(logging.WARNING, logger="hf_seqgan.rewards"):
        trainer.train()
    assert "The reward nan_for_first_row returned a non-finite value" in caplog.text
    after = _params(trainer.model)
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # the other rows still trained
    assert trainer.baseline.value is not None and torch.isfinite(torch.tensor(trainer.baseline.value))
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all(torch.isfinite(torch.tensor(h["grad_norm"])) for h in logged)
    assert all("nonfinite_steps" not in h for h in trainer.state.log_history)


def test_the_moving_average_baseline_never_absorbs_a_non_finite_mean():
    from hf_seqgan.rewards import MovingAverageBaseline, drop_nonfinite

    baseline = MovingAverageBaseline(0.5)
    assert baseline.update(float("nan")) == 0.0 and baseline.value is None
    baseline.update(2.0)
    assert baseline.update(float("inf")) == 2.0 and baseline.value == 2.0
    scores, valid = drop_nonfinite(torch.tensor([1.0, float("-inf"), 3.0]), "f")
    assert valid.tolist() == [True, False, True] and scores.tolist() == [1.0, 0.0, 3.0]
    per_token, valid = drop_nonfinite(torch.tensor([[1.0, float("nan")], [1.0, 2.0]]), "g", valid[:2])
    assert valid.tolist() == [False, False] and torch.isfinite(per_token).all()


class _NanLossOnce(TrainerCallback):
    """Makes the loss of optimizer step ``at`` NaN (a weight set to NaN before it, restored after)."""

    def __init__(self, at):
        self.at, self.saved = at, None

    def on_step_begin(self, args, state, control, model=None, **kw):
        if state.global_step == self.at:
            p = next(model.parameters())
            self.saved = p.detach().clone()
            p.data.fill_(float("nan"))

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if self.saved is not None:
            next(model.parameters()).data.copy_(self.saved)
            self.saved = None


def test_a_non_finite_step_is_skipped_and_counted(make_model, tokenizer, corpus, tmp_path):
    trainer = _ss(make_model("bart"), tokenizer, _data(tokenizer, corpus), tmp_path, max_steps=4, logging_steps=1, learning_rate=1e-3)
    snapshots = {}

    class Snap(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kw):
            snapshots[state.global_step] = _params(model)

    trainer.add_callback(Snap())
    trainer.add_callback(_NanLossOnce(at=2))
    trainer.train()
    assert trainer.state.global_step == 4
    after_skip = snapshots[3]
    assert all(torch.equal(a, b) for a, b in zip(snapshots[2], after_skip))  # step 2 moved nothing
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[1], snapshots[2]))  # step 1 did
    assert [h.get("nonfinite_steps") for h in trainer.state.log_history if "loss" in h] == [None, None, 1, 1]


def test_divergence_stops_training(make_model, tokenizer, corpus, tmp_path):
    trainer = _ss(make_model("bart"), tokenizer, _data(tokenizer, corpus), tmp_path, max_steps=40, learning_rate=1e3)
    with pytest.raises(NonFiniteTrainingError, match=r"went non-finite for 3 optimizer steps in a row .*Lower the learning rate"):
        trainer.train()
    assert trainer.state.global_step < 40


class _Poison(TrainerCallback):
    """From optimizer step ``at`` on, one weight is NaN: every later loss is NaN."""

    def __init__(self, at):
        self.at = at

    def on_step_begin(self, args, state, control, model=None, **kw):
        if state.global_step == self.at:
            next(model.parameters()).data.fill_(float("nan"))


def test_a_non_finite_run_stops_and_names_the_last_good_checkpoint(make_model, tokenizer, corpus, tmp_path):
    trainer = _ss(make_model("bart"), tokenizer, _data(tokenizer, corpus), tmp_path, max_steps=20, save_strategy="steps", save_steps=1,
                  max_nonfinite_steps=2)
    trainer.add_callback(_Poison(at=3))
    with pytest.raises(NonFiniteTrainingError, match=r"at step 4: the loss \(nan\) and the gradient norm \(nan\) went non-finite for 2 .*"
                                                     r"The last good checkpoint is .*checkpoint-2 "):
        trainer.train()


def test_max_nonfinite_steps_is_validated(tmp_path):
    with pytest.raises(ValueError, match="max_nonfinite_steps must be an integer >= 1"):
        ScheduledSamplingConfig(str(tmp_path), max_nonfinite_steps=0)


# ---------------------------------------------------------------------- bad input
def _empty_labels(tokenizer, corpus, n=16):
    enc = tokenizer([r["article"] for r in corpus[:n]], truncation=True, max_length=32)
    return Dataset.from_dict({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": [[-100, -100]] * n})


@pytest.mark.parametrize("method", ["scheduled_sampling", "professor_forcing", "adversarial"])
def test_labels_that_are_all_ignored_are_refused(make_model, tokenizer, corpus, tmp_path, method):
    data = _empty_labels(tokenizer, corpus)
    common = {**QUIET, "max_steps": 1, "save_strategy": "no"}
    if method == "scheduled_sampling":
        trainer = _ss(make_model("bart"), tokenizer, data, tmp_path, max_steps=1)
    elif method == "professor_forcing":
        trainer = ProfessorForcingTrainer(make_model("bart"), ProfessorForcingConfig(str(tmp_path), **common), train_dataset=data,
                                          processing_class=tokenizer)
    else:
        trainer = AdversarialTrainer(make_model("bart"), args=AdversarialConfig(str(tmp_path), **common, max_new_tokens=4),
                                     train_dataset=data, processing_class=tokenizer)
    with pytest.raises(ValueError, match="Every label of this batch is -100"):
        trainer.train()


def test_an_empty_training_set_is_refused(make_model, tokenizer, tmp_path):
    empty = Dataset.from_dict({"input_ids": [], "attention_mask": [], "labels": []})
    with pytest.raises(ValueError, match=r"train_dataset is empty \(0 rows\)"):
        _ss(make_model("bart"), tokenizer, empty, tmp_path)


# ---------------------------------------------------------------------- resuming a half-written run
def test_resume_true_skips_an_incomplete_newest_checkpoint(make_model, tokenizer, corpus, tmp_path, caplog):
    data = _data(tokenizer, corpus)
    run = tmp_path / "run"
    full = _ss(make_model("bart"), tokenizer, data, run, max_steps=4, save_strategy="steps", save_steps=2)
    full.train()
    # a process killed while writing checkpoint-4: the weights are there, the trainer state is not
    os.remove(run / "checkpoint-4" / "trainer_state.json")
    resumed = _ss(make_model("bart"), tokenizer, data, run, max_steps=4, save_strategy="no")
    with caplog.at_level(logging.WARNING, logger="hf_seqgan.trainers._base"):
        resumed.train(resume_from_checkpoint=True)
    assert "Skipping the incomplete checkpoint" in caplog.text and "checkpoint-4" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(_params(full.model), _params(resumed.model)))  # resumed from 2, exactly

    shutil.rmtree(run / "checkpoint-2")
    with pytest.raises(ValueError, match="no checkpoint in .* is complete"):
        _ss(make_model("bart"), tokenizer, data, run).train(resume_from_checkpoint=True)


# ---------------------------------------------------------------------- LoRA on a model built from a config
def test_lora_on_a_model_built_from_a_config_reloads_offline(make_model, tokenizer, corpus, tmp_path):
    model = make_model("bart")
    assert not model.name_or_path  # built from a config: no Hub id, no folder
    args = ScheduledSamplingConfig(str(tmp_path / "out"), **{**QUIET, "max_steps": 2, "save_strategy": "no"}, learning_rate=1e-2)
    trainer = ScheduledSamplingTrainer(model, args, train_dataset=_data(tokenizer, corpus), processing_class=tokenizer,
                                       peft_config=LoraConfig(task_type="SEQ_2_SEQ_LM", r=4))
    trainer.train()
    trainer.save_model()
    batch = tokenizer(["the bank of peru"], return_tensors="pt")
    batch["decoder_input_ids"] = batch["input_ids"][:, :3]
    trainer.model.eval()
    with torch.no_grad():
        trained = trainer.model(**batch).logits
    reloaded = AutoPeftModelForSeq2SeqLM.from_pretrained(tmp_path / "out")
    assert reloaded.peft_config["default"].base_model_name_or_path == str((tmp_path / "out" / "base_model").resolve())
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(**batch).logits, trained)
