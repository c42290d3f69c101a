"""Pretrain a small BART-style model by denoising (Lewis et al. 2020, https://arxiv.org/abs/1910.13461:
text infilling, sentence permutation) on unlabeled plain-text files, so that the recipes start from
a model that writes the language: the saved folder (model + tokenizer) loads in every recipe with
``--model_name_or_path``.

A byte-level BPE tokenizer is trained first, of a size chosen from the data (``--vocab_size 0``:
a third of the distinct words, 1k-8k). Each file may carry a tag (``en_XX=train.en``): the tag
becomes a special token put in front of its lines (source and target), as the shared-model recipes
(``run_translation.py``, ``run_style_transfer.py``, ``--x_token/--y_token``) put their direction tags.

Progress: one log line every ``--logging_steps`` with the loss, tokens/s and the ETA; a checkpoint
every ``--save_steps`` (``--resume`` continues from the last one); ``--time_budget`` minutes stops
training and saves.

Usage:

    D=../shared/data
    # English, several domains (news, captions, reviews), 20 minutes on the CPU
    python examples/run_pretraining.py --train_files $D/gigaword/train.article.unpaired.txt $D/gigaword/train.headline.unpaired.txt \\
        $D/multi30k/train.en $D/yelp/train.0 $D/yelp/train.1 --time_budget 20 --output_dir outputs/pretrained_en
    # two languages with their codes, for run_translation.py's shared model (en_XX / de_DE)
    python examples/run_pretraining.py --train_files en_XX=$D/multi30k/train.en de_DE=$D/multi30k/train.de --output_dir outputs/pretrained_ende
    python examples/run_pretraining.py ... --resume                      # continue an interrupted run
    # then, e.g.
    python examples/run_summarization.py --model_name_or_path outputs/pretrained_en --preset cpu \\
        --train_file $D/gigaword/valid.article.txt --train_target_file $D/gigaword/valid.headline.txt
    python examples/run_pretraining.py args.json                         # all arguments from a JSON file
"""

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from .. import recipes
from ..pretraining import pretrain, read_corpora

logger = logging.getLogger("run_pretraining")


@dataclass
class PretrainingArguments:
    train_files: list[str] = field(metadata={"help": "Plain-text files (one item a line), each `path` or `tag=path` (a tag such as en_XX becomes a special token in front of its lines)."})
    output_dir: str = field(default="outputs/pretrained", metadata={"help": "Where checkpoints, the final model and its tokenizer are written."})
    vocab_size: int = field(default=0, metadata={"help": "Tokenizer size (0: chosen from the data, 1k-8k)."})
    family: str = field(default="bart", metadata={"help": "Model family (bart, mbart, t5, marian, pegasus)."})
    d_model: int = field(default=256, metadata={"help": "Hidden size (feed-forward 4x)."})
    layers: int = field(default=3, metadata={"help": "Encoder and decoder layers."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout."})
    max_length: int = field(default=96, metadata={"help": "Tokens kept of a line."})
    batch_size: int = field(default=64, metadata={"help": "Lines per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (inverse-sqrt decay after the warm-up)."})
    warmup_steps: int = field(default=300, metadata={"help": "Linear warm-up steps."})
    max_steps: int = field(default=100000, metadata={"help": "Optimizer steps at most (the time budget usually ends training first)."})
    time_budget: float = field(default=0.0, metadata={"help": "Stop after this many minutes of training and save (0: no budget)."})
    logging_steps: int = field(default=50, metadata={"help": "Steps between progress lines (loss, tokens/s, ETA)."})
    save_steps: int = field(default=500, metadata={"help": "Steps between checkpoints (and held-out denoising losses)."})
    infill_ratio: float = field(default=0.3, metadata={"help": "Share of words masked by text infilling (spans ~ Poisson(3), one <mask> each)."})
    permute_sentences: bool = field(default=True, metadata={"help": "Shuffle the sentences of multi-sentence lines."})
    max_lines_per_file: Optional[int] = field(default=None, metadata={"help": "Keep only this many lines of each file (quick runs)."})
    validation_lines: int = field(default=200, metadata={"help": "Lines of each file held out for the denoising loss on validation."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in --output_dir."})
    seed: int = field(default=42, metadata={"help": "Random seed."})
    disable_tqdm: bool = field(default=True, metadata={"help": "No progress bar (the progress lines are logged)."})


def main(argv=None):
    # 1. Arguments (command line or one JSON file), 2. logging.
    (args,) = recipes.parse_args((PretrainingArguments,), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    for name in (logger.name, "hf_seqgan"):
        logging.getLogger(name).setLevel(logging.INFO)

    # 3. Data: every file with its tag.
    corpora = read_corpora(args.train_files, args.max_lines_per_file)
    for (tag, lines), spec in zip(corpora, args.train_files):
        logger.info("%s: %d lines%s", spec.split("=", 1)[-1], len(lines), f" (tag {tag})" if tag else "")

    # 4. Tokenizer, model, denoising training with checkpoints, the time budget, then the final save.
    metrics = pretrain(corpora, args.output_dir, vocab_size=args.vocab_size or None, family=args.family, d_model=args.d_model, layers=args.layers,
                       heads=args.heads, dropout=args.dropout, max_length=args.max_length, batch_size=args.batch_size,
                       learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, max_steps=args.max_steps, time_budget=args.time_budget,
                       logging_steps=args.logging_steps, save_steps=args.save_steps, infill_ratio=args.infill_ratio,
                       permute=args.permute_sentences, validation_lines=args.validation_lines, resume=args.resume, seed=args.seed,
                       disable_tqdm=args.disable_tqdm)

    # 5. What was done: pretraining.json beside the model, and a summary.
    with open(os.path.join(args.output_dir, "pretraining.json"), "w", encoding="utf-8") as f:
        json.dump({**metrics, "train_files": args.train_files}, f, indent=2)
    print(f"\n== Denoising pretraining ==\nSaved:  {os.path.abspath(args.output_dir)} (load it with --model_name_or_path)")
    print(f"Model:  {args.family} d_model {args.d_model}, {args.layers}+{args.layers} layers, {metrics['parameters'] / 1e6:.2f}M parameters, "
          f"tokenizer {metrics['vocab_size']} tokens")
    print(f"Steps:  {metrics['steps']} in {metrics['runtime_s'] / 60:.1f} min ({metrics['tokens_per_s']:,.0f} target tokens/s)"
          + (" -- stopped by the time budget" if metrics["stopped_by_time_budget"] else ""))
    print(f"Loss:   train {metrics['train_loss']:.4f}" + (f", held-out denoising {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else ""))
    print("Curve:  " + ", ".join(f"{s}:{v:.2f}" for s, v in metrics["curve"][:: max(1, len(metrics["curve"]) // 12)]))
    return metrics


if __name__ == "__main__":
    main()
