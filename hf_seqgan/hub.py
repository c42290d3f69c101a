"""Hub pushes for models trained by hf_seqgan (their model cards are :mod:`hf_seqgan.cards`,
re-exported here).

Every trainer inherits from :class:`~hf_seqgan.trainers._base.BaseTrainer`:

- ``create_model_card(...)`` (the signature of transformers' ``Trainer.create_model_card``) and
  ``save_model()`` write a ``README.md`` for the generator and one in each auxiliary model's folder
  (``discriminator/``, ``reconstructor/``), rendered offline from the Jinja templates in
  ``model_cards/`` with `huggingface_hub.ModelCard.from_template`. A card is filled from the run:
  the base model, the method and its papers (BibTeX), every setting that differs from the config
  class's defaults (schedules spelled out with a reading), the datasets, the final evaluation
  metrics as ``eval_results`` (``model-index`` in the metadata), the library versions, the intended
  use and the limitations (GAN training is unstable; MLE decoded at a lower temperature is a strong
  baseline, Caccia et al. 2020, https://arxiv.org/abs/1811.02549).
- ``push_to_hub()`` pushes the generator with its card, and each auxiliary model as a subfolder of
  the generator's repo (default) or to a repo of its own (``trainer.auxiliary_hub_model_ids =
  {"discriminator": "me/my-discriminator"}``, or the same keyword of ``push_to_hub``).
  ``hub_model_id``, ``hub_private_repo``, ``hub_token``, ``hub_revision`` and the periodic
  ``hub_strategy`` (``every_save``, ``checkpoint``, ``all_checkpoints``) behave as in
  transformers, auxiliary models included. A push saves first; when it then fails (offline, no token,
  a Hub unreachable or silent: every request is bounded by :data:`REQUEST_TIMEOUT`), :class:`HubPushError`
  says what to change and where the complete model is. Nothing pushed holds ``hub_token`` or a local path.

Examples:

```python
>>> from hf_seqgan.hub import describe_schedule
>>> describe_schedule("linear:1,0,1000")
'linear from 1 to 0 over 1000 steps, then 0'
>>> describe_schedule("inverse_sigmoid:k=1000")
'k / (k + exp(step / k)) with k=1000: 0.999 at step 0, 0.5 at step 6908, then towards 0'

```
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from .cards import Method, describe_schedule, method_of, model_card, templates_dir, write_model_cards  # noqa: F401  (the card API, also from here)

__all__ = ["Method", "method_of", "HubPushError", "describe_schedule", "model_card", "write_model_cards", "init_repo", "push_trainer", "push_checkpoint", "templates_dir"]

logger = logging.getLogger(__name__)

TRAINING_STATE = re.compile(r"^(optimizer|scheduler|rng_state|scaler).*|^trainer_state\.json$|^hf_seqgan_training_state\.pt$")
CONNECT_TIMEOUT = 10.0  # seconds to reach the Hub endpoint: the probe (_probe) and each connection of hf_seqgan's requests
#: Seconds a Hub request of hf_seqgan waits to send or hear (the client has no timeout); env HF_SEQGAN_HUB_TIMEOUT.
REQUEST_TIMEOUT = float(os.environ.get("HF_SEQGAN_HUB_TIMEOUT") or 60)


class HubPushError(OSError):
    """A push to the Hub cannot be done as configured (offline mode, no token, unreachable endpoint)."""


# ------------------------------------------------------------------ pushing
def hub_api():
    """An `HfApi` on the current endpoint (``huggingface_hub.constants.ENDPOINT``), tagged hf_seqgan
    (its user agent), whose requests are bounded (:func:`_bound_requests`)."""
    from huggingface_hub import HfApi

    from . import __version__

    _bound_requests()
    return HfApi(library_name="hf_seqgan", library_version=__version__)


def _bounded(request) -> None:
    """httpx request hook: a request of hf_seqgan (its user agent) that sets no timeout gets
    :data:`CONNECT_TIMEOUT` to connect and :data:`REQUEST_TIMEOUT` for the rest; others are left alone."""
    timeout = request.extensions.get("timeout") or {}
    if "hf_seqgan/" in request.headers.get("user-agent", "") and all(value is None for value in timeout.values()):
        request.extensions["timeout"] = {"connect": CONNECT_TIMEOUT, "read": REQUEST_TIMEOUT, "write": REQUEST_TIMEOUT, "pool": REQUEST_TIMEOUT}


def _bound_requests() -> None:
    """Make huggingface_hub's clients run :func:`_bounded` before each request (a push's calls set no
    timeout: a server that takes a connection and never answers would hold them forever), by wrapping
    its client factory (a custom one included): once, and again if it was replaced since."""
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    make = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)  # huggingface_hub has no public getter
    if getattr(make, "bounds_hf_seqgan", False):
        return

    def factory():
        client = make()
        client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], _bounded]}
        return client

    factory.bounds_hf_seqgan = True
    set_client_factory(factory)  # closes the shared client: the next request builds one with the hook


@contextmanager
def hub_errors(action: str, token=None, saved: Optional[str] = None):
    """Fail clearly when the Hub cannot be reached as configured (offline, no token, unreachable or
    silent); name the fix and, when the model was saved before (``saved``: its folder), where it is."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import OfflineModeIsEnabled

    folder = os.path.abspath(saved or ".")
    after = (f"Nothing is lost: the model is saved, complete, in {folder}; upload that folder once the Hub is reachable (`hf upload "
             f"<repo> {folder}`) or push again." if saved else "Or build the trainer with push_to_hub=False and push after training.")
    if constants.is_offline_mode():
        raise HubPushError(f"Cannot {action}: huggingface_hub is in offline mode (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE (it is read "
                           f"when huggingface_hub is imported) where the Hub ({constants.ENDPOINT}) is reachable. {after}")
    if token is False or (token is None and get_token() is None):
        raise HubPushError(f"Cannot {action}: no Hugging Face token. Log in (`hf auth login`), set HF_TOKEN, or pass hub_token. {after}")
    unreachable = ("Cannot {action}: {endpoint} is unreachable or does not answer ({error}); check HF_ENDPOINT and the network (or "
                   "set HF_HUB_OFFLINE=1 to fail at once). {after}")
    _probe(constants.ENDPOINT, lambda err: HubPushError(unreachable.format(action=action, endpoint=constants.ENDPOINT, error=err, after=after)))
    try:
        yield
    except OfflineModeIsEnabled as err:
        raise HubPushError(f"Cannot {action}: offline mode was enabled during the push ({err}). {after}") from err
    except Exception as err:
        # httpx's TransportError (connection refused, DNS, timeouts) has no common base with OSError
        if not (isinstance(err, (ConnectionError, TimeoutError)) or any(c.__name__ == "TransportError" for c in type(err).__mro__)):
            raise
        raise HubPushError(unreachable.format(action=action, endpoint=constants.ENDPOINT, error=f"{type(err).__name__}: {err}", after=after)) from err


def _probe(endpoint: str, error: Callable[[str], Exception]) -> None:
    """Open (and close) a TCP connection to the endpoint within :data:`CONNECT_TIMEOUT` seconds, so
    that a dead endpoint fails at once rather than after the client's retries. Skipped behind a
    proxy, which the client goes through and this probe would not."""
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return
    url = urlsplit(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        raise error(f"{type(err).__name__}: {err}") from err


def init_repo(trainer, token=None, private=None) -> None:
    """What ``BaseTrainer.init_hf_repo`` does: create the generator's repo (``hub_model_id``, else the
    output folder's name) on the current endpoint."""
    if trainer.is_world_process_zero():
        token = token if token is not None else trainer.args.hub_token
        with hub_errors("create the Hub repo", token):
            _create_repo(trainer, token, private if private is not None else trainer.args.hub_private_repo)


def _create_repo(trainer, token, private) -> None:
    repo = trainer.args.hub_model_id or Path(trainer.args.output_dir).absolute().name
    trainer.hub_model_id = hub_api().create_repo(repo, token=token, private=private, exist_ok=True).repo_id
    trainer.push_in_progress = None


def _without_token(args, *folders: str) -> None:
    """Blank ``hub_token`` in the ``training_args.bin`` (transformers pickles the whole arguments) of
    folders about to be uploaded, by hf_seqgan or by hand (as :class:`HubPushError` advises)."""
    import torch
    from transformers.trainer import TRAINING_ARGS_NAME

    if not args.hub_token:
        return
    for folder in folders:
        path = os.path.join(folder, TRAINING_ARGS_NAME)
        if os.path.isfile(path) and args.hub_token.encode() in Path(path).read_bytes():
            saved = torch.load(path, weights_only=False)
            saved.hub_token = None
            torch.save(saved, path)


def _separate_repos(trainer, private, token) -> dict[str, str]:
    """The auxiliary models pushed to repos of their own (created on first use)."""
    repos = {n: r for n, r in getattr(trainer, "auxiliary_hub_model_ids", {}).items() if r and n in trainer._auxiliaries}
    created = trainer.__dict__.setdefault("_hub_created_repos", {})
    for name, repo in repos.items():
        if repo not in created:
            created[repo] = hub_api().create_repo(repo, token=token, private=private, exist_ok=True).repo_id
        repos[name] = created[repo]
    return repos


def push_trainer(trainer, *, commit_message="End of training", blocking=True, token=None, revision=None, private=None, card_kwargs=None):
    """What ``BaseTrainer.push_to_hub`` does: transformers' ``Trainer.push_to_hub`` with the model
    cards and the auxiliary models (subfolders, or their own repos). The model is saved first,
    always: a push that then fails leaves it complete in ``output_dir`` and says so."""
    args = trainer.args
    token = token if token is not None else args.hub_token
    private = private if private is not None else args.hub_private_repo
    card_kwargs = dict(card_kwargs or {})
    trainer.callback_handler.on_push_begin(args, trainer.state, trainer.control)
    if card_kwargs.get("model_name") is None and args.should_save:
        card_kwargs["model_name"] = (args.hub_model_id or Path(args.output_dir).name).split("/")[-1]
    trainer.save_model(_internal_call=True)  # weights and auxiliary folders, before any request
    if not trainer.is_world_process_zero():
        return None
    trainer.create_model_card(**card_kwargs)  # the cards, with any error raised (save_model only warns)
    _without_token(args, args.output_dir)
    with hub_errors("push to the Hub", token, saved=args.output_dir):
        if trainer.hub_model_id is None:
            _create_repo(trainer, token, private)
            trainer.create_model_card()  # again, with the repo's full id (the arguments are remembered)
        separate = _separate_repos(trainer, private, token)
        trainer._finish_current_push()
        revision = revision if revision is not None else args.hub_revision
        jobs = _upload_output(trainer, hub_api(), commit_message, separate, token=token, run_as_future=not blocking, revision=revision)
        if not blocking:
            _track(trainer, jobs)
    return jobs[0]


def _upload_output(trainer, api, message: str, separate: dict[str, str], **upload) -> list:
    """Upload the output folder to the generator's repo (checkpoints, ``_*`` files and the auxiliary
    models that have repos of their own left out) and each of those models to its repo."""
    out = trainer.args.output_dir
    ignore = ["_*", "checkpoint-*"] + [f"{name}/*" for name in separate]
    jobs = [api.upload_folder(repo_id=trainer.hub_model_id, folder_path=out, commit_message=message, ignore_patterns=ignore, **upload)]
    return jobs + [api.upload_folder(repo_id=repo, folder_path=os.path.join(out, name), commit_message=message, **upload)
                   for name, repo in separate.items()]


def _track(trainer, jobs) -> None:
    from transformers.utils import PushInProgress

    if trainer.push_in_progress is None or trainer.push_in_progress.is_done():
        trainer.push_in_progress = PushInProgress(jobs)
    else:
        trainer.push_in_progress.jobs.extend(jobs)


def push_checkpoint(trainer, checkpoint_folder: str) -> None:
    """The periodic push of ``hub_strategy`` (transformers' ``Trainer._push_from_checkpoint``): the
    generator files (weights or adapter, config, tokenizer, training arguments), the auxiliary
    folders and the cards of the checkpoint (not its optimizer and trainer state) go to ``output_dir`` and are
    uploaded in the background; ``checkpoint``/``all_checkpoints`` also upload the checkpoint
    folder itself (resumable: it holds the auxiliary models' optimizer state)."""
    from transformers.trainer_utils import HubStrategy, SaveStrategy

    args = trainer.args
    if not trainer.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
        return
    if not args.hub_always_push and trainer.push_in_progress is not None and not trainer.push_in_progress.is_done():
        return
    trainer.callback_handler.on_push_begin(args, trainer.state, trainer.control)
    output_dir = args.output_dir
    for entry in os.scandir(checkpoint_folder):
        if entry.is_dir() and entry.name in trainer._auxiliaries:
            shutil.copytree(entry.path, os.path.join(output_dir, entry.name), dirs_exist_ok=True)
        elif entry.is_file() and not TRAINING_STATE.match(entry.name):
            shutil.copy(entry.path, os.path.join(output_dir, entry.name))
    whole = args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS)  # the checkpoint folder is uploaded too
    _without_token(args, output_dir, *([checkpoint_folder] if whole else []))
    with hub_errors("push a checkpoint to the Hub", args.hub_token, saved=checkpoint_folder):
        step = f"step {trainer.state.global_step}" if args.save_strategy == SaveStrategy.STEPS else f"epoch {int(trainer.state.epoch)}"
        message = f"Training in progress, {step}"
        api = hub_api()
        common = dict(token=args.hub_token, run_as_future=True, revision=args.hub_revision)
        jobs = _upload_output(trainer, api, message, _separate_repos(trainer, args.hub_private_repo, args.hub_token), **common)
        if whole:
            path_in_repo = "last-checkpoint" if args.hub_strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
            jobs.append(api.upload_folder(repo_id=trainer.hub_model_id, folder_path=checkpoint_folder, path_in_repo=path_in_repo,
                                          commit_message=message + ", checkpoint", **common))
        _track(trainer, jobs)
