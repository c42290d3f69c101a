"""plot_training draws the curves a real run logged, grouped into panels by name pattern."""

import json

import pytest
from datasets import Dataset
from transformers import TrainerCallback

from hf_seqgan.plotting import find_trainer_state, plot_training, training_panels
from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Recorder(TrainerCallback):
    """What a TensorBoard / W&B callback receives: the logs given to ``on_log``."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def _dataset(tokenizer, rows):
    enc = tokenizer([r["article"] for r in rows], truncation=True, max_length=32)
    labels = tokenizer([r["headline"] for r in rows], truncation=True, max_length=10).input_ids
    return Dataset.from_dict({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": labels})


def test_plot_training_after_a_real_adversarial_run(make_model, tokenizer, corpus, tmp_path):
    args = AdversarialConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=3, learning_rate=1e-3,
        report_to="none", use_cpu=True, save_strategy="no", logging_steps=1, eval_strategy="steps", eval_steps=3,
        seed=0, max_new_tokens=4, dataloader_num_workers=0, mle_weight="1", adversarial_weight="linear:0,1,3",
    )
    trainer = AdversarialTrainer(
        make_model("bart", warm=False), args=args, train_dataset=_dataset(tokenizer, corpus[:16]), eval_dataset=_dataset(tokenizer, corpus[16:20]),
        processing_class=tokenizer, callbacks=[recorder := _Recorder()],
    )
    trainer.train()
    trainer.save_state()
    # the method's figures reach the logging callbacks, not only trainer_state.json
    received = {k for logs in recorder.logs for k in logs}
    assert {"d_acc_real", "d_acc_fake", "d_loss", "reward", "baseline", "adversarial_weight", "eval_loss"} <= received
    assert find_trainer_state(tmp_path) == tmp_path / "trainer_state.json"
    path, panels = plot_training(tmp_path, return_panels=True)
    assert path == str(tmp_path / "training_curves.png")
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    logged = {k for h in trainer.state.log_history for k in h}
    drawn = {k for keys in panels.values() for k in keys}
    assert drawn <= logged
    assert set(panels["discriminator accuracy"]) == {"d_acc_real", "d_acc_fake", "d_acc"}
    assert panels["discriminator loss"] == ["d_loss"]
    assert {"reward", "baseline"} <= set(panels["reward and baseline"])
    assert {"loss", "mle_loss", "eval_loss"} <= set(panels["generator loss / NLL"])
    assert {"adversarial_weight", "mle_weight"} <= set(panels["loss weights"])
    assert "pg_loss" in panels["adversarial objective"] and "learning_rate" in panels["learning rate"]
    assert not drawn & {"epoch", "step", "train_runtime", "train_loss", "total_flos"}


def test_panels_of_every_trainer_by_name_pattern():
    """Keys recorded by the scheduled-sampling, professor-forcing and cycle trainers land in their panels."""
    history = [
        {"step": 1, "loss": 2.0, "nll_loss": 1.9, "gold_probability": 0.9, "replaced_fraction": 0.1, "tau": 1.0,
         "d_acc_teacher_forced": 0.6, "d_acc_free_running": 0.4, "adversarial_loss": 0.7, "teacher_forced_loss": 0.6,
         "denoising_x_loss": 1.0, "backtranslation_weight": 0.5, "bleu_reward": 0.2, "kl": 0.01, "entropy": 3.0,
         "free_running_length": 7.0, "grad_norm": 1.0, "epoch": 0.5, "new_figure": 1.0, "flag": True},
        {"step": 2, "eval_loss": 1.5, "eval_rouge1": 0.3, "eval_runtime": 0.1, "eval_samples_per_second": 10.0},
        {"step": 2, "train_loss": 2.0, "train_runtime": 1.0, "total_flos": 1.0},
    ]
    panels = training_panels(history)
    assert panels == {
        "discriminator accuracy": ["d_acc_free_running", "d_acc_teacher_forced"],
        "adversarial objective": ["adversarial_loss", "teacher_forced_loss"],
        "reward and baseline": ["bleu_reward"],
        "KL and entropy": ["entropy", "kl"],
        "temperature τ": ["tau"],
        "teacher forcing": ["gold_probability", "replaced_fraction"],
        "loss weights": ["backtranslation_weight"],
        "generator loss / NLL": ["denoising_x_loss", "loss", "nll_loss", "eval_loss"],
        "lengths": ["free_running_length"],
        "gradient norm": ["grad_norm"],
        "evaluation metrics": ["eval_rouge1"],
        "other": ["new_figure"],
    }


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        plot_training(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"No trainer_state.json.*trainer.save_state\(\)"):
        plot_training(tmp_path)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": [{"step": 3, "train_runtime": 1.0, "epoch": 1.0}]}))
    with pytest.raises(ValueError, match="no logged figure to draw: train with logging_steps"):
        plot_training(tmp_path)
    # a checkpoint further on wins over an older state in output_dir; the file itself is accepted too
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text(json.dumps({"global_step": 10, "log_history": [{"step": 10, "loss": 1.0}]}))
    assert find_trainer_state(tmp_path) == tmp_path / "checkpoint-10" / "trainer_state.json"
    assert plot_training(tmp_path / "checkpoint-10" / "trainer_state.json") == str(tmp_path / "checkpoint-10" / "training_curves.png")


def test_key_selection_and_path(tmp_path):
    history = [{"step": s, "loss": 1.0 / s, "d_loss": 0.7, "d_acc_real": 0.6, "d_acc_fake": 0.5, "reward": 0.1 * s} for s in (1, 2)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": history}))
    out, panels = plot_training(tmp_path, path=tmp_path / "plots" / "d.png", keys=[r"^d_"], return_panels=True)
    assert out == str(tmp_path / "plots" / "d.png") and panels == {"discriminator accuracy": ["d_acc_fake", "d_acc_real"], "discriminator loss": ["d_loss"]}
    assert (tmp_path / "plots" / "d.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match=r"no logged figure to draw matching \['nothing'\]"):
        plot_training(tmp_path, keys=["nothing"])
