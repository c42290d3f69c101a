"""Every trainer is called like `Seq2SeqTrainer`: ``Trainer(model, args, data_collator, train_dataset,
eval_dataset, processing_class)`` by position, its technique's arguments by keyword only."""

import inspect

import pytest

from hf_seqgan.trainers import (
    AdversarialConfig,
    AdversarialTrainer,
    CycleTrainer,
    GRPOTrainer,
    ProfessorForcingConfig,
    ProfessorForcingTrainer,
    ScheduledSamplingTrainer,
)

STANDARD = ["model", "args", "data_collator", "train_dataset", "eval_dataset", "processing_class"]


@pytest.mark.parametrize("trainer", [ScheduledSamplingTrainer, ProfessorForcingTrainer, AdversarialTrainer, CycleTrainer])
def test_the_positional_arguments_are_seq2seq_trainers(trainer):
    params = list(inspect.signature(trainer.__init__).parameters.values())[1:]
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == STANDARD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[len(STANDARD):])


def test_grpo_takes_trls_positional_arguments():
    params = list(inspect.signature(GRPOTrainer.__init__).parameters)[1:4]
    assert params == ["model", "reward_funcs", "args"]


@pytest.mark.parametrize("trainer, config", [(AdversarialTrainer, AdversarialConfig), (ProfessorForcingTrainer, ProfessorForcingConfig)])
def test_model_then_args_by_position(make_model, tokenizer, tmp_path, trainer, config):
    built = trainer(make_model("bart", warm=False), config(str(tmp_path), report_to="none", use_cpu=True), processing_class=tokenizer)
    assert isinstance(built.args, config)
    with pytest.raises(TypeError):
        trainer(make_model("bart", warm=False), config(str(tmp_path), report_to="none", use_cpu=True), None, None, None, tokenizer, None)
