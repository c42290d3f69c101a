"""Model cards for models trained by hf_seqgan: ``create_model_card(...)`` (the signature of
transformers' ``Trainer.create_model_card``) and ``save_model()`` of every trainer write a
``README.md`` for the generator and one in each auxiliary model's folder (``discriminator/``,
``reconstructor/``), rendered offline from the Jinja templates in ``model_cards/`` with
`huggingface_hub.ModelCard.from_template`. A card is filled from the run: the base model (a local
folder is named "a local checkpoint", never by its path), the method and its papers with BibTeX (the
trainer class's own ``describe(args)``), every setting that differs from the config class's
defaults (schedules spelled out with a reading), the datasets, the final evaluation metrics as
``eval_results`` (``model-index`` in the metadata), the library versions, the intended use and the
limitations (GAN training is unstable; MLE decoded at a lower temperature is a strong baseline,
Caccia et al. 2020, https://arxiv.org/abs/1811.02549). Pushing is :mod:`hf_seqgan.hub`.

Examples:

```python
>>> from hf_seqgan.cards import describe_schedule
>>> describe_schedule("linear:1,0,1000")
'linear from 1 to 0 over 1000 steps, then 0'
>>> describe_schedule("inverse_sigmoid:k=1000")
'k / (k + exp(step / k)) with k=1000: 0.999 at step 0, 0.5 at step 6908, then towards 0'

```
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

__all__ = ["Method", "method_of", "describe_schedule", "model_card", "write_model_cards", "templates_dir"]

LIBRARY = "`hf_seqgan`"  # how the cards name the library (a Markdown link once it has a public home)
TASK = "text2text-generation"
# Fields that say where and how a run is stored or shown, not how the model was trained.
BOOKKEEPING = {"output_dir", "logging_dir", "run_name", "disable_tqdm", "report_to", "push_to_hub", "hub_model_id", "hub_strategy",
               "hub_token", "hub_private_repo", "hub_always_push", "hub_revision", "overwrite_output_dir"}
VERSIONED = ("hf_seqgan", "transformers", "torch", "peft", "accelerate", "datasets", "tokenizers", "huggingface_hub")


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
