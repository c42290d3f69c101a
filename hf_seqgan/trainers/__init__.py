"""Trainers: each a thin `Seq2SeqTrainer` subclass composing the shared engines, with its config."""

from .scheduled_sampling import ScheduledSamplingConfig, ScheduledSamplingTrainer

__all__ = ["ScheduledSamplingConfig", "ScheduledSamplingTrainer"]
