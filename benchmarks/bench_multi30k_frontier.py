"""Supervised Multi30k en->de checkpoints along the temperature frontier: quality (sacreBLEU to the
references) against diversity (self-BLEU between two samples of the same source, distinct-4), for
greedy decoding and sampling at several temperatures, each model decoded the same way.

Usage::

    python benchmarks/bench_multi30k_frontier.py --models mle=/work/runs/cont_mle ss=/work/runs/cont_ss --json frontier.json
    python benchmarks/bench_multi30k_frontier.py --report frontier.json      # print the tables of a saved run again

Made to compare continuations of one checkpoint given the same extra budget (e.g. ``run_translation.py
--supervised --trainer scheduled_sampling`` against ``--trainer mle``, see ``docs/real_data.md``). The data
is ``../shared/data/multi30k`` beside the repository (``--data``); without it the script says so and exits.
Sampling: the rollout engine at temperature T (no top-k/top-p), seeds ``--seeds``; self-BLEU is the
sacreBLEU of the first seed's samples against the second seed's (lower: more diverse).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _bench_env  # noqa: E402,F401  (offline; the package and the sibling scripts importable)

from _timing import begin  # noqa: E402
from bench_multi30k_decoding import (Settings, add_run_options, generate_all, log, mean_sd, metrics, read,  # noqa: E402
                                     reported_or_skipped, sample_all)
from hf_seqgan.metrics import load_metric  # noqa: E402


def run(models: dict[str, str], data: Path, split: str, temperatures, seeds, max_sources: int | None, json_path: str | None) -> dict:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    sources, references = read(data, split, "en"), read(data, split, "de")
    if max_sources:
        sources, references = sources[:max_sources], references[:max_sources]
    s, sacrebleu = Settings(), load_metric("sacrebleu")
    record = {"split": split, "sources": len(sources), "seeds": list(seeds), "temperatures": list(temperatures), "models": {}}
    for name, path in models.items():
        tok, model = AutoTokenizer.from_pretrained(path), AutoModelForSeq2SeqLM.from_pretrained(path).eval()
        rows = {}
        greedy, _ = generate_all(model, tok, sources, s, do_sample=False, num_beams=1)
        rows["greedy"] = {**metrics(greedy, references, sacrebleu), "samples": greedy[:5]}
        log(f"{name} greedy: BLEU {rows['greedy']['bleu']:.2f}")
        for t in temperatures:
            runs = [sample_all(model, tok, sources, s, seed, temperature=t)[0] for seed in seeds]
            per_seed = [metrics(out, references, sacrebleu) for out in runs]
            row = {k: [m[k] for m in per_seed] for k in per_seed[0]}
            if len(runs) > 1:
                row["self_bleu"] = sacrebleu.compute(predictions=runs[0], references=[[r] for r in runs[1]])["score"]
            row["samples"] = runs[0][:5]
            rows[f"T={t:g}"] = row
            log(f"{name} T={t:g}: BLEU {mean_sd(row['bleu'])}, self-BLEU {row.get('self_bleu', float('nan')):.1f}")
        record["models"][name] = {"path": path, "rows": rows}
        if json_path:
            Path(json_path).write_text(json.dumps(record, indent=1, ensure_ascii=False))
    return record


def report(record: dict) -> None:
    print(f"Multi30k {record['split']} ({record['sources']} sources), seeds {record['seeds']}: sacreBLEU to the references, "
          "self-BLEU between two seeds' samples (lower: more diverse)\n")
    print("| model | decoding | sacreBLEU | self-BLEU | distinct-4 | distinct outputs | mean words |")
    print("|---|---|---|---|---|---|---|")
    for name, entry in record["models"].items():
        for decoding, row in entry["rows"].items():
            def cell(key):
                value = row[key]
                return mean_sd(value) if isinstance(value, list) else f"{value:.2f}"
            self_bleu = f"{row['self_bleu']:.1f}" if "self_bleu" in row else "100 (deterministic)"
            print(f"| {name} | {decoding} | {cell('bleu')} | {self_bleu} | {cell('distinct_4')} | {cell('distinct_fraction')} | {cell('mean_length')} |")
    print("\nSamples (first sources; sampling: the first seed)\n")
    for name, entry in record["models"].items():
        for decoding, row in entry["rows"].items():
            print(f"{name}, {decoding}:")
            for text in row["samples"][:3]:
                print(f"    {text}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=[], help="NAME=PATH of each supervised en->de checkpoint")
    parser.add_argument("--split", choices=["valid", "test"], default="valid")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-sources", type=int, default=None, dest="max_sources")
    add_run_options(parser)
    cli = parser.parse_args(argv)
    if reported_or_skipped(cli, report):
        return
    bad = [m for m in cli.models if "=" not in m]
    if not cli.models or bad:
        parser.error(f"--models takes NAME=PATH pairs (got {bad or 'none'}), e.g. --models mle=out/mle ss=out/ss")
    begin(cli.threads)
    report(run(dict(m.split("=", 1) for m in cli.models), cli.data, cli.split, cli.temperatures, cli.seeds, cli.max_sources, cli.json))


if __name__ == "__main__":
    main()
