"""Saving and resuming for every trainer: the auxiliary models and their optimizers in each checkpoint
(loaded with ``weights_only=True``: a checkpoint never runs code), the newest *complete* checkpoint
for ``resume_from_checkpoint=True``, the base of a LoRA adapter built from a config, model cards
and the Hub (see :mod:`hf_seqgan.hub`). A mixin of :class:`~hf_seqgan.trainers.BaseTrainer`."""

from __future__ import annotations

import copy
import logging
import os
import re
from typing import Optional

import torch

__all__ = ["AUXILIARY_STATE_NAME", "Checkpointing", "checkpoint_steps"]

AUXILIARY_STATE_NAME = "hf_seqgan_training_state.pt"
logger = logging.getLogger("hf_seqgan.trainers._base")


def checkpoint_steps(output_dir: str) -> list[int]:
    """The steps of the ``checkpoint-<step>`` folders in ``output_dir``, oldest first."""
    names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    return sorted(int(m.group(1)) for name in names
                  if (m := re.fullmatch(r"checkpoint-(\d+)", name)) and os.path.isdir(os.path.join(output_dir, name)))


class Checkpointing:
    """Checkpoints, saves, model cards and pushes of :class:`~hf_seqgan.trainers.BaseTrainer`."""

    # ------------------------------------------------------------------ saving and resuming
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """`Trainer.train`; ``resume_from_checkpoint=True`` resumes from the newest *complete*
        checkpoint of ``output_dir`` (a folder left half-written by a killed process is skipped with
        a warning)."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = self._newest_complete_checkpoint()
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    def _missing_from_checkpoint(self, folder: str) -> list[str]:
        """What a checkpoint folder lacks to be resumed from (empty: complete)."""
        from transformers.trainer import TRAINER_STATE_NAME
        from transformers.utils import ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

        weights = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME, ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME)
        missing = [] if os.path.isfile(os.path.join(folder, TRAINER_STATE_NAME)) else [TRAINER_STATE_NAME]
        if not any(os.path.isfile(os.path.join(folder, name)) for name in weights):
            missing.append("the model weights")
        if (self._auxiliaries or self._extra_state()) and not os.path.isfile(os.path.join(folder, AUXILIARY_STATE_NAME)):
            missing.append(AUXILIARY_STATE_NAME)
        return missing

    def _newest_complete_checkpoint(self) -> str:
        out = self.args.output_dir
        found = [(step, f"checkpoint-{step}") for step in reversed(checkpoint_steps(out))]
        if not found:
            raise ValueError(f"resume_from_checkpoint=True, but {out} holds no checkpoint-* folder. Train without resume_from_checkpoint, "
                             "or pass the folder of a checkpoint.")
        for _, name in found:
            folder = os.path.join(out, name)
            missing = self._missing_from_checkpoint(folder)
            if not missing:
                return folder
            logger.warning("Skipping the incomplete checkpoint %s (it has no %s: probably a process killed while saving).", folder, ", ".join(missing))
        raise ValueError(f"resume_from_checkpoint=True, but no checkpoint in {out} is complete (each lacks its trainer state, weights or "
                         f"{AUXILIARY_STATE_NAME}). Start without resume_from_checkpoint.")

    def _save_peft_base(self) -> None:
        """A PEFT adapter records the Hub id or folder of its base model; a base built from a config
        has neither, and the adapter could not be reloaded. Save that base once (the adapter leaves
        its weights untouched) in ``output_dir/base_model`` and record that folder."""
        model = getattr(self.model, "module", self.model)  # inside DDP, the PeftModel itself
        if not hasattr(model, "peft_config") or not hasattr(model, "get_base_model"):
            return
        configs = [c for c in model.peft_config.values() if not c.base_model_name_or_path]
        if not configs or getattr(model.get_base_model(), "name_or_path", None):
            return
        folder = os.path.abspath(os.path.join(self.args.output_dir, "base_model"))
        if not os.path.isfile(os.path.join(folder, "config.json")) and self.args.should_save:
            base = copy.deepcopy(model).base_model.unload()  # the base model without the adapter layers
            base.save_pretrained(folder)
            if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained"):
                self.processing_class.save_pretrained(folder)
            logger.info("The generator's base model was built from a config: saved it in %s for the adapter to reload from.", folder)
        for config in configs:
            config.base_model_name_or_path = folder

    def _extra_state(self) -> dict:
        """State a trainer keeps beside the models (e.g. a moving-average baseline); override both."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Save the generator, each auxiliary model in its subfolder and their model cards; then push
        (``push_to_hub=True`` and a call from the user), as transformers' ``save_model`` does."""
        self._save_peft_base()
        super().save_model(output_dir, _internal_call=True)  # the push waits for the auxiliary models and cards
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            self._save_auxiliaries(output_dir)
            self._write_model_cards(output_dir)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _save_auxiliaries(self, output_dir: str) -> None:
        for name, aux in self._auxiliaries.items():
            folder = os.path.join(output_dir, name)
            model = aux.unwrapped
            if hasattr(model, "save_pretrained"):
                model.save_pretrained(folder)
            else:
                os.makedirs(folder, exist_ok=True)
                torch.save(model.state_dict(), os.path.join(folder, "pytorch_model.bin"))
            if aux.processing_class is not None and hasattr(aux.processing_class, "save_pretrained"):
                aux.processing_class.save_pretrained(folder)

    # ------------------------------------------------------------------ model cards and the Hub
    def _write_model_cards(self, output_dir: str) -> None:
        """The cards of a save: a card that cannot be written (e.g. no jinja2) never stops the weights
        from being saved; create_model_card and push_to_hub raise instead."""
        from ..cards import write_model_cards

        try:
            write_model_cards(self, output_dir, **self._model_card_kwargs)
        except Exception as err:
            logger.warning("Could not write the model cards in %s (%s: %s); the weights are saved.", output_dir, type(err).__name__, err)

    def create_model_card(self, language=None, license=None, tags=None, model_name=None, finetuned_from=None, tasks=None,
                          dataset_tags=None, dataset=None, dataset_args=None, output_dir: Optional[str] = None) -> Optional[list[str]]:
        """Write the model cards (``README.md``) of the generator in ``output_dir`` (default
        ``args.output_dir``) and of each saved auxiliary model in its subfolder, filled from the run
        (see :mod:`hf_seqgan.hub`). Arguments as in transformers' ``Trainer.create_model_card``; they are
        remembered for the cards later saves write. Returns the paths written."""
        if not self.is_world_process_zero():
            return None
        from ..cards import write_model_cards

        given = dict(language=language, license=license, tags=tags, model_name=model_name, finetuned_from=finetuned_from, tasks=tasks,
                     dataset_tags=dataset_tags, dataset=dataset, dataset_args=dataset_args)
        self._model_card_kwargs.update({key: value for key, value in given.items() if value is not None})
        return write_model_cards(self, output_dir if output_dir is not None else self.args.output_dir, **self._model_card_kwargs)

    def init_hf_repo(self, token: Optional[str] = None, private: Optional[bool] = None) -> None:
        """Create the generator's repo (``hub_model_id``, else the output folder's name), failing at
        once with a clear error when offline or without a token."""
        from ..hub import init_repo

        init_repo(self, token=token, private=private)

    def push_to_hub(self, commit_message: Optional[str] = "End of training", blocking: bool = True, token: Optional[str] = None,
                    revision: Optional[str] = None, private: Optional[bool] = None, auxiliary_hub_model_ids: Optional[dict] = None, **kwargs):
        """Upload the generator, its card and the auxiliary models with theirs (transformers'
        ``Trainer.push_to_hub``). ``auxiliary_hub_model_ids`` (e.g. ``{"discriminator": "me/my-d"}``)
        updates :attr:`auxiliary_hub_model_ids`: the models named there go to repos of their own.
        ``kwargs`` go to :meth:`create_model_card`. Returns the generator's `CommitInfo` (a future
        when ``blocking=False``)."""
        from ..hub import push_trainer

        if auxiliary_hub_model_ids:
            unknown = set(auxiliary_hub_model_ids) - set(self._auxiliaries)
            if unknown:
                raise ValueError(f"auxiliary_hub_model_ids names {sorted(unknown)}, but this trainer's auxiliary models are {sorted(self._auxiliaries)}.")
            self.auxiliary_hub_model_ids.update(auxiliary_hub_model_ids)
        return push_trainer(self, commit_message=commit_message, blocking=blocking, token=token, revision=revision, private=private, card_kwargs=kwargs)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        from ..hub import push_checkpoint

        push_checkpoint(self, checkpoint_folder)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if not self.args.should_save:
            return
        state = {
            "auxiliaries": {
                name: {
                    "model": aux.unwrapped.state_dict(),
                    "optimizer": aux.optimizer.state_dict(),
                    "scheduler": aux.scheduler.state_dict() if aux.scheduler is not None else None,
                    "steps": aux.steps,
                }
                for name, aux in self._auxiliaries.items()
            },
            "extra": self._extra_state(),
        }
        torch.save(state, os.path.join(output_dir, AUXILIARY_STATE_NAME))

    def _load_optimizer_and_scheduler(self, checkpoint: Optional[str]) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, AUXILIARY_STATE_NAME)
        if not os.path.isfile(path):
            if self._auxiliaries or self._extra_state():
                raise FileNotFoundError(
                    f"{checkpoint} has no {AUXILIARY_STATE_NAME}: it was not written by this trainer, so the auxiliary "
                    f"models ({sorted(self._auxiliaries)}) and their optimizers cannot be restored. Resume from a checkpoint "
                    "this trainer saved, or start without resume_from_checkpoint."
                )
            return
        try:  # the state holds tensors, numbers, strings, lists and dicts only: nothing in a checkpoint may run code
            state = torch.load(path, map_location=self.args.device, weights_only=True)
        except Exception as err:
            raise ValueError(f"Refusing to load {path}: it holds more than tensors, numbers, strings and containers ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}), so it may run code when unpickled. hf_seqgan never writes "
                             "such a file: do not resume from a checkpoint folder you do not trust.") from None
        missing = set(self._auxiliaries) - set(state["auxiliaries"])
        if missing:
            raise ValueError(f"The checkpoint {checkpoint} holds no state for the auxiliary model(s) {sorted(missing)}.")
        for name, aux in self._auxiliaries.items():
            saved = state["auxiliaries"][name]
            aux.unwrapped.load_state_dict(saved["model"])
            aux.optimizer.load_state_dict(saved["optimizer"])
            if aux.scheduler is not None and saved["scheduler"] is not None:
                aux.scheduler.load_state_dict(saved["scheduler"])
            aux.steps = saved["steps"]
        self._load_extra_state(state["extra"])
