"""Training curves from a run's ``trainer_state.json``: one PNG, one panel per group of figures.

Every trainer of this library logs its method-specific figures through `BaseTrainer.record`, so they
land in ``trainer_state.json``'s ``log_history`` beside the Trainer's own ``loss``, ``grad_norm`` and
``learning_rate`` (and in TensorBoard / W&B through the same logs). `plot_training` groups the keys by
name pattern (D accuracy, rewards and baselines, KL and entropy, τ, teacher-forcing probability, loss
weights, ...), so the figures of a new trainer are drawn without a change here as long as their names
follow the same conventions (``d_acc_*``, ``*_reward``, ``*_weight``, ``*_loss``, ...). Evaluation
figures (``eval_*``) share the panel of their training counterpart, drawn dashed with markers.

Examples:

```python
>>> from hf_seqgan.plotting import plot_training
>>> plot_training("outputs/my-run")  # doctest: +SKIP
'outputs/my-run/training_curves.png'
```
"""

import json
import math
import re
from pathlib import Path
from typing import Optional, Sequence, Union

__all__ = ["PANELS", "find_trainer_state", "training_panels", "plot_training"]

# (panel title, pattern on the key without its "eval_" prefix); the first match wins, so the
# specific groups stand before the generic "loss" one.
PANELS = [
    ("discriminator accuracy", r"^d_acc"),
    ("discriminator loss", r"^d_.*loss$"),
    ("adversarial objective", r"^(pg|gumbel|adversarial|policy|teacher_forced)_loss$"),
    ("reward and baseline", r"reward|baseline|advantage"),
    ("KL and entropy", r"(^|_)(kl|entropy)($|_)"),
    ("temperature τ", r"(^|_)(tau|temperature)($|_)"),
    ("teacher forcing", r"gold_probability|teacher_forcing|replaced_fraction|sampling_probability"),
    ("loss weights", r"_weight$|^weight_"),
    ("generator loss / NLL", r"(^|_)(loss|nll)($|_)"),
    ("lengths", r"length"),
    ("learning rate", r"^learning_rate$|(^|_)lr$"),
    ("gradient norm", r"grad_norm"),
]

# Bookkeeping keys of the Trainer's logs and of its end-of-training summary entry.
_SKIP = re.compile(r"^(epoch|step|total_flos|num_input_tokens_seen|train_loss)$|runtime$|per_second$")


def find_trainer_state(output_dir: Union[str, Path]) -> Path:
    """The ``trainer_state.json`` of a run: in ``output_dir`` or its ``checkpoint-*`` folders, the one with
    the highest ``global_step`` (``output_dir`` itself on a tie). ``output_dir`` may also be the file."""
    output_dir = Path(output_dir)
    if output_dir.is_file():
        return output_dir
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir} is not a folder: pass the output_dir of a training run (or its trainer_state.json).")
    candidates = [output_dir / "trainer_state.json"] + sorted(
        output_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0), reverse=True
    )
    candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        raise FileNotFoundError(
            f"No trainer_state.json in {output_dir} nor in a checkpoint-* folder below it. The Trainer writes it with each "
            f"checkpoint (save_strategy='steps'/'epoch') or when you call trainer.save_state() after training."
        )
    return max(candidates, key=lambda p: json.loads(p.read_text(encoding="utf-8")).get("global_step", 0))


def _series(log_history: list) -> dict:
    """``{key: [(step, value), ...]}`` of the numeric figures of ``log_history`` (bookkeeping left out)."""
    series: dict = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if _SKIP.search(key) or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            series.setdefault(key, []).append((step, float(value)))
    return series


def training_panels(log_history: list, keys: Optional[Sequence[str]] = None) -> dict:
    """Which logged keys go into which panel: ``{panel title: [key, ...]}`` in the order they are drawn.

    Args:
        log_history (`list[dict]`): ``TrainerState.log_history``.
        keys (`list[str]`, *optional*): keep only the keys matching one of these regular expressions
            (searched in the full key, ``eval_`` prefix included).

    Keys matching no pattern of `PANELS` go to a last "other" panel, except evaluation metrics
    (``eval_rouge1``, ...), which get an "evaluation metrics" panel.
    """
    series = _series(log_history)
    panels: dict = {}
    for key in series:
        if keys is not None and not any(re.search(pattern, key) for pattern in keys):
            continue
        base = key[len("eval_"):] if key.startswith("eval_") else key
        title = next((t for t, pattern in PANELS if re.search(pattern, base)), "evaluation metrics" if key != base else "other")
        panels.setdefault(title, []).append(key)
    order = [t for t, _ in PANELS] + ["evaluation metrics", "other"]
    return {title: sorted(panels[title], key=lambda k: (k.startswith("eval_"), k)) for title in order if title in panels}


def plot_training(
    output_dir: Union[str, Path],
    path: Optional[Union[str, Path]] = None,
    keys: Optional[Sequence[str]] = None,
    ncols: int = 3,
    dpi: int = 80,
    return_panels: bool = False,
):
    """Draw the logged training curves of a run into a PNG.

    Args:
        output_dir (`str` or `Path`): the run's output folder (its ``trainer_state.json``, or the newest
            checkpoint's), or the ``trainer_state.json`` file itself.
        path (`str` or `Path`, *optional*): where to write the PNG; ``<output_dir>/training_curves.png``
            by default (beside the state file when ``output_dir`` is the file).
        keys (`list[str]`, *optional*): regular expressions selecting the keys to draw (all by default).
        ncols (`int`, defaults to 3): panels per row.
        dpi (`int`, defaults to 80): resolution of the PNG.
        return_panels (`bool`, defaults to `False`): also return the panels drawn (see `training_panels`).

    Returns:
        `str`: the PNG's path; ``(path, panels)`` with ``return_panels=True``.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plot_training needs matplotlib: `pip install matplotlib` (or `pip install hf_seqgan[examples]`).") from err

    state_file = find_trainer_state(output_dir)
    log_history = json.loads(state_file.read_text(encoding="utf-8")).get("log_history", [])
    panels = training_panels(log_history, keys)
    if not panels:
        raise ValueError(
            f"{state_file} holds no logged figure to draw{' matching ' + repr(list(keys)) if keys else ''}: train with "
            f"logging_steps set (e.g. logging_steps=10) so that the Trainer writes losses and metrics into log_history."
        )
    series = _series(log_history)
    n = len(panels)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    # a Figure with its own Agg canvas: no pyplot, so no global backend switch in the caller's process
    fig = Figure(figsize=(4.6 * ncols, 3.2 * nrows), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.5 / nrows / 3.2 + 0.02, top=1 - 0.35 / nrows / 3.2 - 0.01, wspace=0.25, hspace=0.45)
    for index, (title, panel_keys) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        for key in panel_keys:
            steps, values = zip(*series[key])
            style = dict(linestyle="--", marker="o", markersize=3) if key.startswith("eval_") else dict(linewidth=1.2)
            ax.plot(steps, values, label=key, **style)
        if title == "discriminator accuracy":
            ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")  # chance level
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    base = state_file.parent if Path(output_dir).is_file() else Path(output_dir)
    path = Path(path) if path is not None else base / "training_curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return (str(path), panels) if return_panels else str(path)
