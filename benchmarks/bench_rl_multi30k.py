"""GRPO (sentence-BLEU reward) against an MLE control on Multi30k en->de, from one supervised BART.

Phases (each writes its results to ``--work`` as it goes, so that a stop leaves partial results):

  sup     train a byte-level BPE tokenizer and a ~7.6M-parameter BART with a plain Seq2SeqTrainer for
          a wall-time budget, save it, score it (greedy, valid): ``base.json``.
  cont    from that checkpoint, one continuation (``--method grpo|mle``, ``--seed``) of ``--steps``
          optimizer steps over the same ``--prompts-per-step`` source sentences per step (the same
          rows in the same order for both methods at one seed), then score it: ``<method>_s<seed>.json``.
  report  print the markdown table of every json in ``--work`` (``--append`` adds it to RESULTS.md).

Example (the full run of RESULTS.md)::

  python benchmarks/bench_rl_multi30k.py sup --minutes 25
  python benchmarks/bench_rl_multi30k.py cont --method grpo --seed 0 --steps 200
  python benchmarks/bench_rl_multi30k.py cont --method mle --seed 0 --steps 200
  python benchmarks/bench_rl_multi30k.py report

Quick: ``sup --minutes 1 --max-valid 100`` then ``cont ... --steps 5 --max-valid 100``.
One torch thread everywhere (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_env  # noqa: E402,F401

import torch  # noqa: E402

DATA = Path("/work/shared/data/multi30k")


def read(split: str, lang: str, data: Path) -> list[str]:
    return [line.rstrip("\n") for line in open(data / f"{split}.{lang}", encoding="utf-8")]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def greedy_eval(model, tok, sources: list[str], refs: list[str], batch: int = 128, max_new_tokens: int = 64) -> dict:
    import sacrebleu

    start = time.time()
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    hyps = [None] * len(sources)
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        enc = tok([sources[j] for j in idx], padding=True, truncation=True, max_length=64, return_tensors="pt")
        out = model.generate(**enc, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
        for j, text in zip(idx, tok.batch_decode(out, skip_special_tokens=True)):
            hyps[j] = text.strip()
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    return {"bleu": bleu.score, "bleu_str": str(bleu), "distinct": len(set(hyps)), "n": len(hyps), "hyps": hyps,
            "eval_s": time.time() - start}


def samples(sources, refs, hyps, k: int) -> list[dict]:
    picks = [i * (len(sources) // max(k, 1)) for i in range(k)]
    return [{"src": sources[i], "ref": refs[i], "hyp": hyps[i], "row": i} for i in picks]


def valid_data(args):
    src, ref = read("valid", "en", args.data), read("valid", "de", args.data)
    if args.max_valid:
        src, ref = src[: args.max_valid], ref[: args.max_valid]
    return src, ref


def dump(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False))
    tmp.replace(path)


# ---------------------------------------------------------------------------------------- supervised
class TimeBudget:
    """TrainerCallback that stops training once ``seconds`` have passed since the first step."""

    def __new__(cls, seconds: float):
        from transformers import TrainerCallback

        class _CB(TrainerCallback):
            def __init__(self):
                self.start = None

            def on_train_begin(self, args, state, control, **kw):
                self.start = time.time()

            def on_step_end(self, args, state, control, **kw):
                if time.time() - self.start > seconds:
                    control.should_training_stop = True
                    control.should_save = False
                return control

        return _CB()


def tokenize_pairs(tok, src, tgt, max_len: int = 64):
    from datasets import Dataset

    enc = tok(src, truncation=True, max_length=max_len)
    lab = tok(text_target=tgt, truncation=True, max_length=max_len)
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": lab["input_ids"]})


def phase_sup(args) -> None:
    from transformers import (BartConfig, BartForConditionalGeneration, DataCollatorForSeq2Seq, GenerationConfig,
                              Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed)

    from hf_seqgan.tiny import train_tokenizer

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    set_seed(0)
    t0 = time.time()
    tr_en, tr_de = read("train", "en", args.data), read("train", "de", args.data)
    tok = train_tokenizer(tr_en + tr_de, vocab_size=args.vocab, language_codes=(), model_max_length=128)
    tok.save_pretrained(work / "base")
    log(f"tokenizer: {len(tok)} tokens in {time.time() - t0:.1f}s; sample {tok.tokenize(tr_de[0])}")
    lens = [len(x) for x in tok(tr_de[:2000])["input_ids"]]
    log(f"target tokens (2000 rows): mean {sum(lens) / len(lens):.1f}, max {max(lens)}")
    cfg = BartConfig(vocab_size=len(tok), d_model=256, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, dropout=0.1, attention_dropout=0.0,
                     activation_dropout=0.0, max_position_embeddings=128, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=tok.eos_token_id)
    model = BartForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(decoder_start_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, num_beams=1, max_new_tokens=64)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"BART: {n_params / 1e6:.2f}M parameters")
    train = tokenize_pairs(tok, tr_en, tr_de)
    targs = Seq2SeqTrainingArguments(output_dir=str(work / "sup_tmp"), per_device_train_batch_size=64, learning_rate=1e-3,
                                     warmup_steps=300, lr_scheduler_type="inverse_sqrt", label_smoothing_factor=0.1, max_steps=200_000,
                                     weight_decay=0.0, logging_steps=200, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                                     dataloader_num_workers=0, disable_tqdm=True)
    trainer = Seq2SeqTrainer(model=model, args=targs, train_dataset=train, data_collator=DataCollatorForSeq2Seq(tok, model=model),
                             processing_class=tok, callbacks=[TimeBudget(args.minutes * 60)])
    t1 = time.time()
    trainer.train()
    train_s = time.time() - t1
    steps = trainer.state.global_step
    last_lr = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    end_lr = 1e-3 * min((steps + 1) / 300, (300 / max(steps, 1)) ** 0.5)  # inverse_sqrt after warm-up
    trainer.save_model(str(work / "base"))
    tok.save_pretrained(work / "base")
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    log(f"supervised: {steps} steps in {train_s:.0f}s, end lr {end_lr:.2e}, losses {losses[-3:]}")
    meta = {"steps": steps, "train_s": train_s, "end_lr": end_lr, "logged_lr": last_lr[-1:] , "params": n_params, "vocab": len(tok),
            "losses": losses, "epochs": steps * 64 / len(train), "command": " ".join(sys.argv)}
    dump(work / "sup_meta.json", meta)
    src, ref = valid_data(args)
    res = greedy_eval(model, tok, src, ref)
    res.update(meta, method="base", seed=None, samples=samples(src, ref, res["hyps"], 5))
    dump(work / "base.json", res)
    log(f"base: {res['bleu_str']}; distinct {res['distinct']}/{res['n']} ({res['eval_s']:.0f}s)")
    for s in res["samples"]:
        log(f"  SRC {s['src']}\n  REF {s['ref']}\n  OUT {s['hyp']}")


# ---------------------------------------------------------------------------------------- continuations
def continuation_rows(args, seed: int):
    """The (en, de) rows of the continuation, in order: ``steps * prompts_per_step`` rows of a seeded
    shuffle of the training set. Identical for GRPO and MLE at one seed."""
    import random

    en, de = read("train", "en", args.data), read("train", "de", args.data)
    order = list(range(len(en)))
    random.Random(1000 + seed).shuffle(order)
    need = args.steps * args.prompts_per_step
    order = (order * (need // len(order) + 1))[:need]
    return [en[i] for i in order], [de[i] for i in order]


def sequential(trainer_cls):
    """``trainer_cls`` reading its train set in order (the rows of continuation_rows, as given)."""

    class Sequential(trainer_cls):
        def _get_train_sampler(self, train_dataset=None):
            data = train_dataset if train_dataset is not None else self.train_dataset
            return torch.utils.data.SequentialSampler(data)

    Sequential.__name__ = f"Sequential{trainer_cls.__name__}"
    return Sequential


def bleu_reward(prompts, completions, completion_ids=None, reference=None, **kwargs):
    import sacrebleu

    return [sacrebleu.sentence_bleu(c.strip(), [r]).score / 100.0 for c, r in zip(completions, reference)]


def phase_cont(args) -> None:
    from transformers import AutoTokenizer, BartForConditionalGeneration, DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed

    work, seed = args.work, args.seed
    meta = json.loads((work / "sup_meta.json").read_text())
    tok = AutoTokenizer.from_pretrained(work / "base")
    set_seed(seed)
    model = BartForConditionalGeneration.from_pretrained(work / "base")
    src_rows, ref_rows = continuation_rows(args, seed)
    lr = args.lr if args.lr is not None else (meta["end_lr"] if args.method == "mle" else 2e-5)
    tag = args.tag or f"{args.method}_s{seed}"
    out_dir = work / f"run_{tag}"
    P = args.prompts_per_step
    common = dict(output_dir=str(out_dir), learning_rate=lr, max_steps=args.steps, lr_scheduler_type="constant_with_warmup",
                  warmup_steps=args.warmup, weight_decay=0.0, logging_steps=args.log_every, save_strategy="no", report_to=[], use_cpu=True,
                  seed=seed, dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0)
    from datasets import Dataset

    if args.method == "grpo":
        from hf_seqgan.trainers import GRPOConfig, GRPOTrainer

        G = args.num_generations
        cfg = GRPOConfig(per_device_train_batch_size=P * G, num_generations=G, max_completion_length=args.max_completion_length,
                         max_prompt_length=64, temperature=1.0, beta=args.beta, **common)
        data = Dataset.from_dict({"prompt": src_rows, "reference": ref_rows})
        trainer = sequential(GRPOTrainer)(model=model, reward_funcs=[bleu_reward], args=cfg, train_dataset=data, processing_class=tok)
    else:
        cfg = Seq2SeqTrainingArguments(per_device_train_batch_size=P, label_smoothing_factor=0.1, **common)
        data = tokenize_pairs(tok, src_rows, ref_rows)
        trainer = sequential(Seq2SeqTrainer)(model=model, args=cfg, train_dataset=data, data_collator=DataCollatorForSeq2Seq(tok, model=model),
                                             processing_class=tok)

    class Progress(__import__("transformers").TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            keep = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in (logs or {}).items()
                    if k in ("loss", "reward", "reward_std", "frac_reward_zero_std", "completion_length", "learning_rate", "grad_norm")}
            log(f"{tag} step {state.global_step}: {keep}")

    trainer.add_callback(Progress())
    t0 = time.time()
    trainer.train()
    train_s = time.time() - t0
    log(f"{tag}: {trainer.state.global_step} steps in {train_s:.0f}s ({train_s / max(trainer.state.global_step, 1):.2f} s/step)")
    src, ref = valid_data(args)
    res = greedy_eval(model, tok, src, ref)
    history = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history]
    res.update(method=args.method, seed=seed, steps=trainer.state.global_step, train_s=train_s, lr=lr, prompts_per_step=P,
               num_generations=args.num_generations if args.method == "grpo" else None, beta=args.beta if args.method == "grpo" else None,
               command="python " + " ".join(sys.argv), history=history, samples=samples(src, ref, res["hyps"], 3), tag=tag)
    dump(work / f"{tag}.json", res)
    log(f"{tag}: {res['bleu_str']}; distinct {res['distinct']}/{res['n']} ({res['eval_s']:.0f}s)")
    for s in res["samples"]:
        log(f"  SRC {s['src']}\n  REF {s['ref']}\n  OUT {s['hyp']}")


# ---------------------------------------------------------------------------------------- report
def phase_report(args) -> str:
    import statistics

    work = args.work
    base = json.loads((work / "base.json").read_text()) if (work / "base.json").exists() else None
    runs = {}
    for path in sorted(work.glob("*_s[0-9].json")):
        r = json.loads(path.read_text())
        runs.setdefault(r["method"], []).append(r)
    lines = ["| model | seeds | valid BLEU mean ± std | per seed | distinct outputs (of n) | extra steps | lr | train wall s / run | eval s |",
             "|---|---|---|---|---|---|---|---|---|"]
    if base:
        lines.append(f"| base (supervised, {base['steps']} steps, {base['train_s'] / 60:.1f} min) | – | {base['bleu']:.2f} | – | "
                     f"{base['distinct']} / {base['n']} | – | – | {base['train_s']:.0f} | {base['eval_s']:.0f} |")
    for method in ("mle", "grpo"):
        rs = sorted(runs.get(method, []), key=lambda r: r["seed"])
        if not rs:
            continue
        b = [r["bleu"] for r in rs]
        sd = statistics.stdev(b) if len(b) > 1 else 0.0
        label = "MLE control (Seq2SeqTrainer)" if method == "mle" else f"GRPO (G={rs[0]['num_generations']}, beta={rs[0]['beta']})"
        lines.append(f"| {label} | {','.join(str(r['seed']) for r in rs)} | {statistics.mean(b):.2f} ± {sd:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in b)} | {', '.join(str(r['distinct']) for r in rs)} / {rs[0]['n']} | "
                     f"{rs[0]['steps']} × {rs[0]['prompts_per_step']} prompts | {rs[0]['lr']:.2e} | "
                     f"{', '.join('%.0f' % r['train_s'] for r in rs)} | {', '.join('%.0f' % r['eval_s'] for r in rs)} |")
    lines += ["", "| model | seed | BLEU | n-gram precisions / BP / hyp_len (ref_len) | train reward first → last logged | train completion length first → last |",
              "|---|---|---|---|---|---|"]
    for r in ([base] if base else []) + [r for m in ("mle", "grpo") for r in sorted(runs.get(m, []), key=lambda r: r["seed"])]:
        detail = r["bleu_str"].split("= ", 1)[1].split(" ", 1)[1]
        rew = [h["reward"] for h in r.get("history", []) if "reward" in h]
        clen = [h["completion_length"] for h in r.get("history", []) if "completion_length" in h]
        lines.append(f"| {r['method']} | {r['seed'] if r['seed'] is not None else '–'} | {r['bleu']:.2f} | {detail} | "
                     f"{f'{rew[0]:.3f} → {rew[-1]:.3f}' if rew else '–'} | {f'{clen[0]:.1f} → {clen[-1]:.1f}' if clen else '–'} |")
    if base:
        rows = [s["row"] for s in base["samples"]]
        firsts = {m: sorted(rs, key=lambda r: r["seed"])[0] for m, rs in runs.items()}
        lines += ["", f"Greedy outputs on valid rows {rows} (base, and seed 0 of each continuation):", ""]
        for row, s in zip(rows, base["samples"]):
            lines += [f"- row {row} SRC: {s['src']}", f"  - REF:  {s['ref']}", f"  - base: {base['hyps'][row]}"]
            for m in ("mle", "grpo"):
                if m in firsts:
                    lines.append(f"  - {m} s0: {firsts[m]['hyps'][row]}")
    text = "\n".join(lines)
    print(text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["sup", "cont", "report"])
    p.add_argument("--work", type=Path, default=Path("/tmp/rl_multi30k"))
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-valid", type=int, default=0, help="score only the first N valid rows (0: all 1,014)")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--minutes", type=float, default=25.0, help="supervised wall-time budget")
    p.add_argument("--method", choices=["grpo", "mle"], default="grpo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--max-completion-length", type=int, default=48)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=None, help="default: GRPO 2e-5, MLE the supervised run's final learning rate")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--tag", default=None, help="name of the result json (default <method>_s<seed>)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"sup": phase_sup, "cont": phase_cont, "report": phase_report}[args.phase](args)


if __name__ == "__main__":
    main()
