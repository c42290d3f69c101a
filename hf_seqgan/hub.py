"""Model cards and Hub pushes for models trained by hf_seqgan.

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

import dataclasses
import logging
import math
import os
import re
import shutil
import socket
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

__all__ = ["Method", "method_of", "HubPushError", "describe_schedule", "model_card", "write_model_cards", "init_repo", "push_trainer", "push_checkpoint", "templates_dir"]

logger = logging.getLogger(__name__)

LIBRARY = "`hf_seqgan`"  # how the cards name the library (a Markdown link once it has a public home)
TASK = "text2text-generation"
# Fields that say where and how a run is stored or shown, not how the model was trained.
BOOKKEEPING = {"output_dir", "logging_dir", "run_name", "disable_tqdm", "report_to", "push_to_hub", "hub_model_id", "hub_strategy",
               "hub_token", "hub_private_repo", "hub_always_push", "hub_revision", "overwrite_output_dir"}
TRAINING_STATE = re.compile(r"^(optimizer|scheduler|rng_state|scaler).*|^trainer_state\.json$|^hf_seqgan_training_state\.pt$")
CONNECT_TIMEOUT = 10.0  # seconds to reach the Hub endpoint: the probe (_probe) and each connection of hf_seqgan's requests
#: Seconds a Hub request of hf_seqgan waits to send or hear (the client has no timeout); env HF_SEQGAN_HUB_TIMEOUT.
REQUEST_TIMEOUT = float(os.environ.get("HF_SEQGAN_HUB_TIMEOUT") or 60)
VERSIONED = ("hf_seqgan", "transformers", "torch", "peft", "accelerate", "datasets", "tokenizers", "huggingface_hub")


class HubPushError(OSError):
    """A push to the Hub cannot be done as configured (offline mode, no token, unreachable endpoint)."""


@dataclasses.dataclass
class Method:
    """What a trainer's card says of its method (``describe(args)`` of the trainer class): its name,
    Hub tag, a paragraph, the BibTeX keys of its papers (``model_cards/references.bib``, or
    ``bibtex``: entries the trainer brings itself)."""

    name: str
    tag: str
    description: str
    papers: list[str]
    bibtex: dict = dataclasses.field(default_factory=dict)


def method_of(trainer) -> Method:
    """The trainer class's own description of its method for this run's config (``describe``)."""
    describe = getattr(type(trainer), "describe", None)
    if describe is not None:
        return describe(trainer.args)
    return Method(type(trainer).__name__, "seq2seq", f"Trained with `{type(trainer).__name__}`.", [])


def _role(trainer, name: Optional[str]) -> str:
    """What the auxiliary model ``name`` does, from the trainer class's ``roles``."""
    if name is None:
        return ""
    return getattr(type(trainer), "roles", {}).get(name, "")


def templates_dir() -> Path:
    """``model_cards/`` beside the package (source or editable install) or inside it (wheel)."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "model_cards", here / "model_cards"):
        if (folder / "generator.md.jinja").is_file():
            return folder
    raise FileNotFoundError(f"The model card templates (model_cards/*.md.jinja) are missing beside {here}; reinstall hf_seqgan.")


def _references() -> dict[str, str]:
    text = (templates_dir() / "references.bib").read_text(encoding="utf-8")
    return {m.group(1): m.group(0).strip() for m in re.finditer(r"@\w+\{(\w+),.*?\n\}", text, flags=re.S)}


def _paper(key: str, bibtex: str) -> dict:
    field = {k: re.sub(r"[{}]|\\'", "", v) for k, v in re.findall(r"(\w+)\s*=\s*\{(.*)\},?\s*$", bibtex, flags=re.M)}
    authors = [a.split(",")[0].strip() for a in field.get("author", "").split(" and ")]
    return {"key": key, "title": field.get("title", key), "year": field.get("year", ""), "url": field.get("url", ""),
            "authors": authors[0] + (" et al." if len(authors) > 2 else f" & {authors[1]}" if len(authors) == 2 else "")}


# ------------------------------------------------------------------ the run's facts
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def describe_schedule(spec) -> str:
    """A reading of a schedule string, e.g. ``inverse_sigmoid:k=1000`` -> how it moves over steps."""
    from .schedules import Schedule, _fmt as num

    s = Schedule.from_string(spec)
    if s.name == "constant":
        return f"constant {num(s.value_)}"
    if s.name in ("linear", "cosine"):
        shape = "linear" if s.name == "linear" else "half a cosine"
        return f"{shape} from {num(s.start)} to {num(s.end)} over {num(s.steps)} steps, then {num(s.end)}"
    if s.name == "exponential":
        half = f", halfway after {math.log(0.5) / math.log(s.rate):.0f} steps" if s.rate < 1 else ""
        return f"{num(s.end)} + ({num(s.start)} - {num(s.end)}) x {num(s.rate)}^step: {num(s.start)} at step 0{half}"
    if s.name == "inverse_sigmoid":
        return f"k / (k + exp(step / k)) with k={num(s.k)}: {s.value(0):.3g} at step 0, 0.5 at step {s.k * math.log(s.k):.0f}, then towards 0"
    if s.name == "piecewise":
        return "linear between " + ", ".join(f"{num(x)} at step {num(y)}" for y, x in s.points) + "; constant outside"
    return str(s)  # pragma: no cover - a schedule added later


def _defaults(args) -> dict:
    """The config class's declared defaults. No config is built for them: building a
    TrainingArguments resets accelerate's shared state, which a card written by a checkpoint save
    mid-training must not touch."""
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(args) if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def _is_default(name: str, value, default) -> bool:
    """``value`` (from ``args.to_dict()``, normalised by ``__post_init__``) against a declared default."""
    from transformers.trainer_pt_utils import AcceleratorConfig

    default = getattr(default, "value", default)  # enums are written as their values
    if value == default:
        return True
    if name == "accelerator_config" and isinstance(value, dict):
        declared = dataclasses.asdict(AcceleratorConfig())
        return all(declared.get(key) == item for key, item in value.items())
    # defaults that __post_init__ resolves (None -> False, "none" -> [], "" -> []): unset stays "empty"
    return default in (None, "", "none") and value in (None, False, "", "none", [], {})


def _config_diff(args) -> tuple[list[dict], list[dict]]:
    """(method settings, training arguments) that differ from the config class's defaults."""
    from transformers import Seq2SeqTrainingArguments

    from .schedules import SCHEDULE_FORMS, Schedule

    defaults = _defaults(args)
    own = {f.name: f for f in dataclasses.fields(args)}
    base = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    method, training = [], []
    for name, value in args.to_dict().items():
        if name in BOOKKEEPING or name.startswith("_") or name not in own:
            continue
        help_text = own[name].metadata.get("help", "")
        is_schedule = SCHEDULE_FORMS in help_text
        if is_schedule:  # compare and show the canonical spelling ("1" is "constant:1")
            value = str(Schedule.from_string(value))
            defaults[name] = str(Schedule.from_string(defaults[name])) if name in defaults else dataclasses.MISSING
        if name in defaults and _is_default(name, value, defaults[name]):
            continue
        reading = describe_schedule(value) if is_schedule else re.split(r"\.\s+(?=[A-Z])", help_text)[0].rstrip(".")
        row = {"name": name, "value": _fmt(value), "default": _fmt(defaults.get(name, "—")), "reading": _fmt(reading), "schedule": is_schedule}
        (training if name in base else method).append(row)
    return method, training


def _schedules(args, step: int) -> list[dict]:
    from .schedules import SCHEDULE_FORMS, Schedule

    rows = []
    for f in dataclasses.fields(args):
        if SCHEDULE_FORMS in f.metadata.get("help", ""):
            schedule = Schedule.from_string(getattr(args, f.name))
            reading = f"{describe_schedule(schedule)}; {schedule.value(step):.4g} at step {step} (end of this run)"
            rows.append({"name": f.name, "value": str(schedule), "reading": reading})
    return rows


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name) if name != "hf_seqgan" else __import__("hf_seqgan").__version__
        except Exception:
            continue
    return found


def _is_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name or "")) and not os.path.exists(name)


def _describe_model(model, finetuned_from: Optional[str] = None) -> dict:
    """Base model facts of ``model`` (a PeftModel, a SequenceDiscriminator or a PreTrainedModel)."""
    from transformers import PretrainedConfig

    inner = model  # a SequenceDiscriminator holds its classifier in .model
    if not isinstance(getattr(model, "config", None), PretrainedConfig) and isinstance(getattr(getattr(model, "model", None), "config", None), PretrainedConfig):
        inner = model.model
    is_peft = hasattr(inner, "peft_config") and hasattr(inner, "get_base_model")
    base = inner.get_base_model() if is_peft else inner
    config = getattr(base, "config", None)
    if not isinstance(config, PretrainedConfig):  # a plain module (e.g. the hidden-state discriminator): its settings, if any
        config = PretrainedConfig(**config) if isinstance(config, dict) else PretrainedConfig()
        config.model_type = None
    name = finetuned_from or getattr(config, "_name_or_path", "") or ""
    hub_id = name if _is_hub_id(name) else None
    sizes = {}
    for key in ("d_model", "hidden_size", "encoder_layers", "decoder_layers", "num_layers", "num_decoder_layers", "num_hidden_layers", "vocab_size"):
        value = getattr(config, key, None)
        aliased = key in ("hidden_size", "num_hidden_layers") and len(sizes) > 0 and value in sizes.values()
        if isinstance(value, int) and not aliased:
            sizes[key] = value
    shape = ", ".join(f"{k}={v}" for k, v in sizes.items())
    params = sum(p.numel() for p in base.parameters())
    if hub_id:
        sentence = f"a fine-tuned version of [{hub_id}](https://huggingface.co/{hub_id})"
    elif name:  # its path is this machine's business, not the card's
        sentence = f"a `{type(base).__name__}` fine-tuned from a local checkpoint"
    else:
        sentence = f"a `{type(base).__name__}` built from its configuration ({shape}) with no pretrained base"
    peft_type = peft_method = None
    if is_peft:
        cfg = next(iter(inner.peft_config.values()))
        peft_method = str(getattr(cfg.peft_type, "value", cfg.peft_type))
        peft_type = f"{peft_method}, target modules {sorted(cfg.target_modules or [])}"
    return {"base_model": hub_id, "base_name": name, "base_sentence": f"{sentence}; {params / 1e6:.2f}M parameters", "is_peft": is_peft,
            "peft_type": peft_type, "peft_method": peft_method, "model_type": getattr(config, "model_type", None), "class": type(base).__name__, "config": config}


def _datasets(trainer, dataset_tags=None, dataset=None) -> tuple[list[str], list[str]]:
    """(dataset tags for the metadata, lines for the card) from the arguments or the datasets' info."""
    try:
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES as packaged
    except ImportError:  # pragma: no cover
        packaged = {}
    tags = [dataset_tags] if isinstance(dataset_tags, str) else list(dataset_tags or [])
    lines = []
    for split, data in (("training", trainer.train_dataset), ("evaluation", trainer.eval_dataset)):
        for key, ds in (data.items() if isinstance(data, dict) else [(None, data)]):
            if ds is None:
                continue
            info = getattr(ds, "info", None)
            name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)
            if not dataset_tags and name and name not in packaged and name != "generator" and name not in tags:
                tags.append(name)
            size = f"{len(ds)} rows" if hasattr(ds, "__len__") else "streamed"
            columns = f", columns {list(ds.column_names)}" if getattr(ds, "column_names", None) else ""
            label = f"`{name}`" if name else "an in-memory dataset"
            desc = f" — {info.description.strip()}" if getattr(info, "description", None) else ""
            lines.append(f"{split}{f' ({key})' if key else ''}: {label}, {size}{columns}{desc}")
    names = [dataset] if isinstance(dataset, str) else list(dataset or [])
    return tags, ([f"datasets: {', '.join(names)}"] if names else []) + lines


def _final_metrics(log_history: list[dict]) -> tuple[dict, Optional[int], dict, Optional[int]]:
    """(last evaluation metrics, its step, last logged training figures, its step)."""
    skip = {"runtime", "samples_per_second", "steps_per_second", "epoch", "step", "total_flos", "model_preparation_time"}
    evals = [e for e in log_history if any(k.startswith("eval_") for k in e)]
    trains = [e for e in log_history if "loss" in e]  # the Trainer's periodic training logs (the summary has train_loss)
    last_eval, last_train = (evals or [{}])[-1], (trains or [{}])[-1]
    eval_metrics = {k[5:]: v for k, v in last_eval.items() if k.startswith("eval_") and k[5:] not in skip and isinstance(v, (int, float))}
    train_metrics = {k: v for k, v in last_train.items() if k not in skip and isinstance(v, (int, float))}
    return eval_metrics, last_eval.get("step"), train_metrics, last_train.get("step")


# The method-specific first limitation of a generator card (the template adds the general ones).
LIMITATIONS = {
    "scheduled-sampling": "Scheduled sampling trains on the model's own predictions: a probability of gold tokens that decays too "
                          "fast makes it learn from poor prefixes, and gains over teacher forcing are often small.",
    None: "Adversarial and free-running training of text generators is unstable: results vary with seeds and settings, "
          "discriminators can win too easily, rewards are high-variance, and outputs can collapse to a few modes.",
}


# ------------------------------------------------------------------ cards
def _repo_of(trainer, model_name: Optional[str]) -> str:
    return getattr(trainer, "hub_model_id", None) or trainer.args.hub_model_id or model_name or Path(trainer.args.output_dir).name


def _own_repo(trainer, name: Optional[str]) -> Optional[str]:
    return getattr(trainer, "auxiliary_hub_model_ids", {}).get(name) if name else None


def _where(trainer, name: str) -> str:
    """Where the auxiliary model ``name`` is pushed, as the generator's card says it."""
    own = _own_repo(trainer, name)
    return f"its own repo [{own}](https://huggingface.co/{own})" if own else f"the `{name}/` folder of this repo"


def _usage(kind, repo: str, subfolder: Optional[str], facts: dict) -> str:
    """A loading snippet: ``kind`` is "seq2seq" or the auxiliary module itself."""
    sub = f', subfolder="{subfolder}"' if subfolder else ""
    if kind != "seq2seq":
        path = f'snapshot_download("{repo}", allow_patterns="{subfolder}/*") + "/{subfolder}"' if subfolder else f'snapshot_download("{repo}")'
        cls = type(kind).__name__
        module = "hf_seqgan" if cls == "SequenceDiscriminator" else type(kind).__module__
        score = '\nprint(discriminator.score_texts(["an output"], sources=["its source"]).exp())  # p(real)' if cls == "SequenceDiscriminator" else ""
        load = (f"discriminator = {cls}.from_pretrained({path})" if hasattr(kind, "from_pretrained")
                else f"import torch\nstate_dict = torch.load({path} + \"/pytorch_model.bin\")  # load into a {cls} built as in training")
        return f"from huggingface_hub import snapshot_download\nfrom {module} import {cls}\n\n{load}{score}"
    if facts["is_peft"]:
        load = (f'from peft import AutoPeftModelForSeq2SeqLM\n\nmodel = AutoPeftModelForSeq2SeqLM.from_pretrained("{repo}"{sub})\n'
                "model = model.merge_and_unload()  # optional: a plain transformers model\n")
        if not facts["base_name"]:
            load = f'# The base model was built in memory: load it yourself, then\n# model = PeftModel.from_pretrained(base_model, "{repo}"{sub})\n' + load
    else:
        load = f'from transformers import AutoModelForSeq2SeqLM\n\nmodel = AutoModelForSeq2SeqLM.from_pretrained("{repo}"{sub})\n'
    return ("from transformers import AutoTokenizer\n" + load + f'tokenizer = AutoTokenizer.from_pretrained("{repo}"{sub})\n'
            'inputs = tokenizer(["a source text"], return_tensors="pt")\n'
            "print(tokenizer.batch_decode(model.generate(**inputs, max_new_tokens=64), skip_special_tokens=True))")


def _tags(*tags) -> list[str]:
    return [t for t in dict.fromkeys(tags) if t]


def model_card(trainer, *, name: Optional[str] = None, language=None, license=None, tags=None, model_name=None, finetuned_from=None,
               tasks=None, dataset_tags=None, dataset=None, dataset_args=None):
    """The `ModelCard` of the generator (``name=None``) or of the auxiliary model ``name``: the
    discriminator template for classifiers, the generator template for seq2seq models (e.g. the
    cycle trainer's reconstructor). Arguments as in transformers' ``Trainer.create_model_card``
    (``dataset_args``: the dataset config of the ``model-index`` results)."""
    from huggingface_hub import ModelCardData

    method = method_of(trainer)
    references = {**_references(), **method.bibtex}
    unknown = [key for key in method.papers if key not in references]
    if unknown:
        raise ValueError(f"{type(trainer).__name__}.describe() cites {unknown}, which are neither in model_cards/references.bib nor in the "
                         "Method's bibtex: give their BibTeX entries in Method(bibtex={key: '@article{key, ...}'}).")
    repo = _repo_of(trainer, model_name)
    data_tags, dataset_lines = _datasets(trainer, dataset_tags, dataset)
    eval_metrics, eval_step, train_metrics, train_step = _final_metrics(trainer.state.log_history)
    task = ([tasks] if isinstance(tasks, str) else list(tasks or [TASK]))[0]
    model = trainer.auxiliary(name).unwrapped if name is not None else trainer.accelerator.unwrap_model(trainer.model)  # a PeftModel stays one
    facts = _describe_model(model, finetuned_from if name is None else None)
    user_tags = [tags] if isinstance(tags, str) else list(tags or [])
    run = dict(model_name=f"{repo.split('/')[-1]}{f' ({name})' if name else ''}", method=method, library=LIBRARY, versions=_versions(),
               papers=[_paper(k, references[k]) for k in method.papers], global_step=trainer.state.global_step, train_step=train_step,
               bibtex="\n\n".join(references[k] for k in method.papers + ["caccia2020language"]), role=name or "generator",
               role_description=_role(trainer, name), task=task, **facts)
    card_data = dict(library_name="peft" if facts["is_peft"] else "transformers", license=license, language=language,
                     base_model=facts["base_model"], datasets=data_tags or None)
    if name is not None and not (hasattr(model, "generate") and getattr(facts["config"], "is_encoder_decoder", False)):
        data = ModelCardData(pipeline_tag="text-classification", tags=_tags("hf_seqgan", name, method.tag, facts["model_type"], *user_tags), **card_data)
        return _classifier_card(trainer, name, model, data, run, repo, train_metrics, data_tags)
    peft_tag = (facts["peft_method"] or "").lower()
    data = ModelCardData(tags=_tags("hf_seqgan", method.tag, task, facts["model_type"], peft_tag, *user_tags), **card_data)
    config_name = ([dataset_args] if isinstance(dataset_args, str) else list(dataset_args or [None]))[0]
    return _seq2seq_card(trainer, name, data, run, repo, eval_metrics, eval_step, train_metrics, data_tags, dataset_lines, config_name)


def _classifier_card(trainer, name, model, data, run, repo, train_metrics, data_tags):
    from huggingface_hub import ModelCard

    prefix, defaults, own = name.split("_")[0], _defaults(trainer.args), _own_repo(trainer, name)
    return ModelCard.from_template(
        data, template_path=str(templates_dir() / "discriminator.md.jinja"), generator_name=repo, generator_link=f"https://huggingface.co/{repo}",
        labels=", ".join(f"{i} = {lbl}" for i, lbl in sorted(run["config"].id2label.items())) if run["model_type"] else None,
        conditional=getattr(model, "conditional", None), max_length=getattr(model, "max_length", None), steps=trainer.auxiliary(name).steps,
        knobs=[{"name": k, "value": _fmt(v), "default": _fmt(getattr(defaults.get(k, "—"), "value", defaults.get(k, "—")))}
               for k, v in trainer.args.to_dict().items() if prefix in k],
        metrics={k: _fmt(v) for k, v in train_metrics.items() if k.startswith(prefix[0] + "_") or prefix in k or "reward" in k},
        usage=_usage(model, own or repo, None if own else name, run), scores_outputs=type(model).__name__ == "SequenceDiscriminator",
        dataset_summary=", ".join(data_tags) or "the run's training data", **run,
    )


def _seq2seq_card(trainer, name, data, run, repo, eval_metrics, eval_step, train_metrics, data_tags, dataset_lines, config_name=None):
    from huggingface_hub import EvalResult, ModelCard

    dataset_tag = (data_tags or ["custom"])[0]
    if eval_metrics:  # model-index
        data.model_name, data.metrics = repo, sorted(eval_metrics)
        data.eval_results = [EvalResult(task_type=run["task"], dataset_type=dataset_tag, dataset_name=dataset_tag, metric_type=k,
                                        metric_value=round(float(v), 6), dataset_config=config_name) for k, v in eval_metrics.items()]
    companions = [{"name": other, "kind": type(trainer.auxiliary(other).unwrapped).__name__, "where": _where(trainer, other)}
                  for other in (getattr(trainer, "_auxiliaries", {}) if name is None else ())]
    method_knobs, training_knobs = _config_diff(trainer.args)
    own = _own_repo(trainer, name)
    return ModelCard.from_template(
        data, template_path=str(templates_dir() / "generator.md.jinja"), companions=companions, trainer_class=type(trainer).__name__,
        config_class=type(trainer.args).__name__, epoch=_fmt(trainer.state.epoch) if trainer.state.epoch else None,
        method_knobs=method_knobs, training_knobs=training_knobs, schedules=_schedules(trainer.args, run["global_step"]),
        dataset_lines=dataset_lines, eval_metrics={k: _fmt(v) for k, v in eval_metrics.items()}, eval_step=eval_step,
        train_metrics={k: _fmt(v) for k, v in train_metrics.items()}, usage=_usage("seq2seq", own or repo, name if name and not own else None, run),
        method_limitation=LIMITATIONS.get(run["method"].tag, LIMITATIONS[None]), **run,
    )


def write_model_cards(trainer, output_dir: str, **card_kwargs) -> list[str]:
    """Write ``README.md`` for the generator in ``output_dir`` and for each auxiliary model in its
    subfolder (when that folder exists). Returns the paths written."""
    written = []
    targets = [(None, output_dir)] + [(n, os.path.join(output_dir, n)) for n in getattr(trainer, "_auxiliaries", {})]
    for name, folder in targets:
        if not os.path.isdir(folder):
            continue
        path = os.path.join(folder, "README.md")
        model_card(trainer, name=name, **card_kwargs).save(path)
        written.append(path)
    return written


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
