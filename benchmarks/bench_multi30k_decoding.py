"""Discriminator-based decoding against plain sampling on supervised Multi30k en->de, at the same N.

Usage::

    python benchmarks/bench_multi30k_decoding.py --model /work/runs/m30k_sup --json m30k.json   # the full run (RESULTS.md)
    python benchmarks/bench_multi30k_decoding.py --quick                                       # CI smoke size (a tiny model, seconds)

The model is a supervised checkpoint of the library's own recipe (``examples/run_translation.py
--supervised --preset cpu``, see ``docs/real_data.md``). The data is ``../shared/data/multi30k``
beside the repository (``--data``); without it the script says so and exits.

1. **Discriminator.** :class:`~hf_seqgan.seq2seq_discriminator.Seq2SeqDiscriminator` (the default
   ratio head, built from the generator) trained by
   :func:`~hf_seqgan.seq2seq_discriminator.train_discriminator` on the Multi30k *train* pairs (real)
   against fresh samples of the generator at T=1 (fake), early-stopped on ``--d-heldout`` train
   pairs held out from its training (never on valid/test). Reported: that held-out accuracy / AUC,
   and the same figures on the evaluated split (its references against one generator sample each:
   a report, not used for stopping).
2. **Decoders, N candidates per source (N = 4, 8).** One pool of N generator samples at T=1 per
   source and seed (``ResidualEBM.propose``: the samples and their log-odds ``l``); from the *same*
   pool: plain sampling (the first candidate: one sample, what choosing uniformly among N gives),
   reranking (``argmax l``, what :func:`~hf_seqgan.reranking.generate_and_rerank` returns),
   the residual EBM (importance resampling with weights ``exp(l / T_E)``, T_E = 1 and 0.5, as
   :meth:`~hf_seqgan.residual_ebm.ResidualEBM.sample`), a generator-only reranker at the same N
   (the highest mean token log-prob) and the best candidate by sentence-BLEU to the reference (an
   oracle, not a method). Next to them: plain sampling at lower temperatures, greedy and beam
   search (N beams), and two controls: the discriminator's trunk sampled directly (at T_E = 1 the
   ratio head's q *is* the trunk) and greedy, and the generator trained by MLE for as many extra
   steps as the discriminator got (same batch, same learning rate).
3. **Metrics** per decoder: sacreBLEU to the references (``hf_seqgan.metrics`` ``sacrebleu``), the
   fraction of distinct outputs, distinct-4, mean length (words); stochastic decoders over
   ``--seeds`` (mean ± sd). **Time** per source of each decoder through the library calls
   (``generate``, ``generate_and_rerank``, ``ResidualEBM.sample``) on the first
   ``--timing-sources`` sources, with a check that reranking and the EBM see the same candidates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import _bench_env  # noqa: E402,F401  (offline; the package and the sibling scripts importable)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _timing import begin  # noqa: E402
from hf_seqgan.collapse import distinct_stats  # noqa: E402
from hf_seqgan.evaluation import _pad  # noqa: E402
from hf_seqgan.metrics import load_metric  # noqa: E402
from hf_seqgan.metrics.functional import distinct_n  # noqa: E402
from hf_seqgan.reranking import generate_and_rerank  # noqa: E402
from hf_seqgan.residual_ebm import ResidualEBM, discriminator_energy, importance_resample  # noqa: E402
from hf_seqgan.rollout import RolloutEngine  # noqa: E402
from hf_seqgan.seq2seq_discriminator import Seq2SeqDiscriminator, heldout_metrics, train_discriminator  # noqa: E402

DATA = _bench_env.ROOT.parent / "shared" / "data" / "multi30k"


@dataclasses.dataclass
class Settings:
    """One run's sizes; ``quick()`` is the CI smoke size (a tiny model trained here in seconds)."""

    split: str = "valid"
    max_sources: int | None = None
    num_candidates: tuple = (4, 8)
    seeds: tuple = (0, 1, 2)
    temperatures: tuple = (0.7, 0.5)
    energy_temperatures: tuple = (2.0, 1.0, 0.5)
    max_source_length: int = 64
    max_new_tokens: int = 40
    batch: int = 64
    d_steps: int = 60
    d_batch: int = 16
    d_learning_rate: float = 3e-4
    d_heldout: int = 256
    eval_every: int = 20
    mle_control: bool = True
    timing_sources: int = 64
    num_samples: int = 5
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> "Settings":
        return cls(max_sources=12, num_candidates=(2, 4), seeds=(0, 1), temperatures=(0.7,), max_new_tokens=12, batch=8, d_steps=4,
                   d_batch=8, d_heldout=16, eval_every=2, timing_sources=4, num_samples=2, quick=True)


def read(data: Path, split: str, lang: str) -> list[str]:
    path = data / f"{split}.{lang}"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: the data folder holds {sorted(p.name for p in data.iterdir())}.")
    return [line.rstrip("\n") for line in open(path, encoding="utf-8")]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ models
def mle_steps(model, tok, pairs: dict, steps: int, batch: int, lr: float, seed: int, label_smoothing: float = 0.1):
    """``steps`` AdamW steps of label-smoothed MLE on random batches of ``pairs`` (token columns
    ``input_ids``/``labels``), in train mode (dropout on); returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    pad = tok.pad_token_id
    for _ in range(steps):
        idx = torch.randint(len(pairs["input_ids"]), (batch,), generator=g).tolist()
        src = _pad([pairs["input_ids"][i] for i in idx], pad)
        lab = _pad([pairs["labels"][i] for i in idx], -100)
        logits = model(input_ids=src, attention_mask=(src != pad).long(), labels=lab).logits  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), lab.flatten(), ignore_index=-100, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


def quick_model(train_src, train_tgt):
    """A tiny BART and tokenizer trained for a few dozen steps on a few hundred pairs (the CI size)."""
    from hf_seqgan.tiny import build_tiny_model, train_tokenizer

    tok = train_tokenizer(train_src + train_tgt, vocab_size=400)
    model = build_tiny_model("bart", tok, d_model=32, layers=1, ffn=64)
    return mle_steps(model, tok, tokenize_pairs(tok, train_src, train_tgt, 32), steps=30, batch=16, lr=3e-3, seed=0), tok


def tokenize_pairs(tok, sources, targets, max_length: int) -> dict:
    return {"input_ids": tok(sources, truncation=True, max_length=max_length)["input_ids"],
            "labels": tok(text_target=targets, truncation=True, max_length=max_length)["input_ids"]}


# ------------------------------------------------------------------ decoding
def batches(tok, sources, s: Settings):
    for i in range(0, len(sources), s.batch):
        enc = tok(sources[i : i + s.batch], padding=True, truncation=True, max_length=s.max_source_length, return_tensors="pt")
        yield enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def generate_all(model, tok, sources, s: Settings, **kwargs) -> tuple[list[str], float]:
    """``model.generate`` over every source (greedy or beam): texts and seconds."""
    start, out = time.perf_counter(), []
    for ids, mask in batches(tok, sources, s):
        out += tok.batch_decode(model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=s.max_new_tokens, **kwargs), skip_special_tokens=True)
    return [t.strip() for t in out], time.perf_counter() - start


@torch.no_grad()
def sample_all(model, tok, sources, s: Settings, seed: int, temperature: float = 1.0) -> tuple[list[str], float]:
    """One sample per source with the rollout engine: texts and seconds."""
    engine = RolloutEngine(model, tok, use_generation_config=False)
    g, start, out = torch.Generator().manual_seed(seed), time.perf_counter(), []
    for ids, mask in batches(tok, sources, s):
        out += engine.decode(engine.sample(ids, mask, max_new_tokens=s.max_new_tokens, temperature=temperature, generator=g))
    return [t.strip() for t in out], time.perf_counter() - start


@torch.no_grad()
def candidate_pool(ebm: ResidualEBM, tok, sources, s: Settings, seed: int) -> dict:
    """N_max generator samples per source at T=1, their texts, discriminator log-odds `(B, N)` and
    mean token log-probs under the generator `(B, N)`."""
    n = max(s.num_candidates)
    g, start = torch.Generator().manual_seed(seed), time.perf_counter()
    texts, log_odds, mean_logp = [], [], []
    for ids, mask in batches(tok, sources, s):
        rollout, logw = ebm.propose(ids, mask, num_samples=n, generator=g, max_new_tokens=s.max_new_tokens)  # logw = l / T_E, T_E = 1
        texts += [t.strip() for t in ebm.engine.decode(rollout)]
        log_odds.append(logw.view(-1, n))
        lengths = rollout.attention_mask.sum(-1).clamp_min(1)
        mean_logp.append(((rollout.logprobs * rollout.attention_mask).sum(-1) / lengths).view(-1, n))
    return {"texts": [texts[i * n : (i + 1) * n] for i in range(len(sources))], "log_odds": torch.cat(log_odds), "mean_logp": torch.cat(mean_logp),
            "seconds": time.perf_counter() - start}


def pick(pool: dict, index: torch.Tensor) -> list[str]:
    return [cands[int(k)] for cands, k in zip(pool["texts"], index)]


def pool_decoders(pool: dict, references, s: Settings, seed: int) -> dict[str, list[str]]:
    """Every decoder that chooses among the pool's first N candidates."""
    import sacrebleu

    g = torch.Generator().manual_seed(seed + 7)
    out = {"sample T=1": pick(pool, torch.zeros(len(references), dtype=torch.long))}
    for n in s.num_candidates:
        l, lp = pool["log_odds"][:, :n], pool["mean_logp"][:, :n]  # (B, n)
        out[f"rerank by D, N={n}"] = pick(pool, l.argmax(-1))
        for te in s.energy_temperatures:
            out[f"residual EBM T_E={te:g}, N={n}"] = pick(pool, importance_resample(l / te, generator=g))
        out[f"rerank by p_G (mean log-prob), N={n}"] = pick(pool, lp.argmax(-1))
        bleu = torch.tensor([[sacrebleu.sentence_bleu(c, [r]).score for c in cands[:n]] for cands, r in zip(pool["texts"], references)])
        out[f"oracle: best sentence-BLEU of N={n} (not a method)"] = pick(pool, bleu.argmax(-1))
    return out


def metrics(outputs: list[str], references: list[str], sacrebleu) -> dict:
    return {"bleu": sacrebleu.compute(predictions=outputs, references=[[r] for r in references])["score"],
            "distinct_fraction": distinct_stats(outputs)["distinct_fraction"], "distinct_4": distinct_n(outputs, n=4)["distinct_4"],
            "mean_length": statistics.fmean(len(o.split()) for o in outputs)}


# ------------------------------------------------------------------ the discriminator
@torch.no_grad()
def split_discrimination(disc, model, tok, sources, references, s: Settings) -> dict:
    """Held-out accuracy / AUC of ``disc`` on the evaluated split: its references against one generator sample each."""
    energy, engine = discriminator_energy(disc), RolloutEngine(model, tok, use_generation_config=False)
    g, real, fake = torch.Generator().manual_seed(12345), [], []
    for (ids, mask), start in zip(batches(tok, sources, s), range(0, len(sources), s.batch)):
        index = torch.arange(ids.shape[0])
        ref = tok(text_target=references[start : start + s.batch], padding=True, truncation=True, max_length=s.max_new_tokens, return_tensors="pt")
        real.append(-energy(ref["input_ids"], ref["attention_mask"], ids, index))
        out = engine.sample(ids, mask, max_new_tokens=s.max_new_tokens, generator=g)
        fake.append(-energy(out.sequences, out.attention_mask, ids, out.source_index))
    return heldout_metrics(torch.cat(real), torch.cat(fake))


def train_d(model, tok, train_pairs: dict, s: Settings):
    """The ratio discriminator, trained ``s.d_steps`` steps; the state kept is the evaluation with the
    best held-out AUC (on the train slice). ``train_discriminator`` itself restores the lowest held-out
    loss, and with this head on real text that is step 0 (logit 0, loss ln 2): the trained log-odds
    separate (AUC ~0.8) but are overconfident, so their loss rises above ln 2 (see the RESULTS entry)."""
    import copy

    disc = Seq2SeqDiscriminator(model, tok, seed=0)
    states = {}

    def log_row(r):
        states[r["step"]] = (r["d_heldout_auc"], copy.deepcopy(disc.state_dict()))
        log(f"  D step {r['step']}: held-out acc {r['d_heldout_acc']:.3f} AUC {r['d_heldout_auc']:.3f} loss {r['d_heldout_loss']:.4f}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_discriminator(disc, model, train_pairs, tokenizer=tok, heldout=s.d_heldout, max_steps=s.d_steps, batch_size=s.d_batch,
                                     learning_rate=s.d_learning_rate, eval_every=s.eval_every, patience=None,
                                     sampling=dict(max_new_tokens=s.max_new_tokens), seed=0, log=log_row)
    result.warned = any("cannot tell real from generated" in str(w.message) for w in caught)
    best = max(states, key=lambda k: states[k][0])
    disc.load_state_dict(states[best][1])
    result.selected = next(r for r in result.history if r["step"] == best)
    return disc.eval(), result


# ------------------------------------------------------------------ timing through the library calls
@torch.no_grad()
def timing(model, tok, disc, ebm: ResidualEBM, sources, s: Settings) -> dict:
    """Seconds per source of each decoder as a user calls it, on ``sources``; and whether
    ``generate_and_rerank`` (on the rollout engine) and ``ResidualEBM.sample`` drew the same candidates."""
    enc = tok(sources, padding=True, truncation=True, max_length=s.max_source_length, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    engine, per = ebm.engine, {}
    calls = {"greedy": lambda: model.generate(**inputs, max_new_tokens=s.max_new_tokens),
             "sample T=1": lambda: engine.sample(**inputs, max_new_tokens=s.max_new_tokens, generator=torch.Generator().manual_seed(0))}
    same = {}
    for n in s.num_candidates:
        calls[f"beam {n}"] = lambda n=n: model.generate(**inputs, num_beams=n, max_new_tokens=s.max_new_tokens)
        calls[f"generate_and_rerank N={n}"] = lambda n=n: generate_and_rerank(engine, inputs, disc, n, generator=torch.Generator().manual_seed(1),
                                                                             max_new_tokens=s.max_new_tokens)
        calls[f"ResidualEBM.sample N={n}"] = lambda n=n: ebm.sample(**inputs, num_candidates=n, generator=torch.Generator().manual_seed(1),
                                                                    max_new_tokens=s.max_new_tokens)
    results = {}
    for name, call in calls.items():
        start = time.perf_counter()
        results[name] = call()
        per[name] = (time.perf_counter() - start) / len(sources)
    for n in s.num_candidates:
        rr, eb = results[f"generate_and_rerank N={n}"], results[f"ResidualEBM.sample N={n}"]
        same[n] = bool(torch.equal(rr.candidates, eb.candidates) and torch.equal(rr.best_index, eb.energies.argmin(-1)))
    return {"seconds_per_source": per, "same_candidates_and_argmax": same, "sources": len(sources)}


# ------------------------------------------------------------------ the run
def mean_sd(values) -> str:
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def run(s: Settings, model_path: str | None, data: Path, json_path: str | None) -> dict:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    t0 = time.perf_counter()
    train_src, train_tgt = read(data, "train", "en"), read(data, "train", "de")
    sources, references = read(data, s.split, "en"), read(data, s.split, "de")
    if s.max_sources:
        sources, references = sources[: s.max_sources], references[: s.max_sources]
    if s.quick:
        train_src, train_tgt = train_src[:300], train_tgt[:300]
        model, tok = quick_model(train_src, train_tgt)
    else:
        model, tok = AutoModelForSeq2SeqLM.from_pretrained(model_path).eval(), AutoTokenizer.from_pretrained(model_path)
    sacrebleu = load_metric("sacrebleu")
    record = {"settings": dataclasses.asdict(s), "model": model_path or "quick tiny BART", "sources": len(sources),
              "parameters": sum(p.numel() for p in model.parameters()), "rows": {}, "seconds": {}}
    rows, seconds = record["rows"], record["seconds"]

    def add(name, outputs, secs=None):
        rows.setdefault(name, []).append({**metrics(outputs, references, sacrebleu), "outputs": outputs[: s.num_samples]})
        if secs is not None:
            seconds.setdefault(name, []).append(secs / len(sources))
        if json_path:  # partial results survive a stop
            Path(json_path).write_text(json.dumps(record, indent=1, ensure_ascii=False))

    # 1. the discriminator (train pairs, early stopping on held-out train pairs)
    log(f"{len(sources)} {s.split} sources; training the ratio discriminator ({s.d_steps} steps at most, batch {s.d_batch})")
    train_pairs = tokenize_pairs(tok, train_src, train_tgt, s.max_source_length)
    disc, result = train_d(model, tok, train_pairs, s)
    record["discriminator"] = dataclasses.asdict(result) | {"warned": result.warned, "selected": result.selected,
                                                                                      f"on_{s.split}": split_discrimination(disc, model, tok, sources, references, s)}
    log(f"D: kept step {result.selected['step']} (held-out acc {result.selected['d_heldout_acc']:.3f} AUC {result.selected['d_heldout_auc']:.3f}); "
        f"train_discriminator's own pick: step {result.best_step} of {result.steps} (acc {result.d_heldout_acc:.3f}), "
        f"{result.seconds:.0f} s; on {s.split}: {record['discriminator'][f'on_{s.split}']}")

    # 2. deterministic references points
    for name, kwargs in [("greedy", {})] + [(f"beam {n}", {"num_beams": n}) for n in s.num_candidates]:
        outputs, secs = generate_all(model, tok, sources, s, **kwargs)
        add(name, outputs, secs)
        log(f"{name}: BLEU {rows[name][-1]['bleu']:.2f}")
    trunk = disc.model.eval()
    add("control: D's trunk, greedy", *generate_all(trunk, tok, sources, s))

    # 3. stochastic decoders, one pool per seed
    ebm = ResidualEBM(model, disc, tok)
    for seed in s.seeds:
        pool = candidate_pool(ebm, tok, sources, s, seed)
        seconds.setdefault(f"pool of N={max(s.num_candidates)} + D scores", []).append(pool["seconds"] / len(sources))
        for name, outputs in pool_decoders(pool, references, s, seed).items():
            add(name, outputs)
        for t in s.temperatures:
            add(f"sample T={t:g}", *sample_all(model, tok, sources, s, seed, t))
        add("control: D's trunk, sample T=1", *sample_all(trunk, tok, sources, s, seed))
        log(f"seed {seed}: sample T=1 BLEU {rows['sample T=1'][-1]['bleu']:.2f}, rerank N={max(s.num_candidates)} "
            f"{rows[f'rerank by D, N={max(s.num_candidates)}'][-1]['bleu']:.2f}")

    # 4. the MLE control: as many extra steps as D took, at its batch and learning rate
    if s.mle_control:
        from copy import deepcopy

        start = time.perf_counter()
        control = mle_steps(deepcopy(model), tok, train_pairs, result.steps, s.d_batch, s.d_learning_rate, seed=0)
        record["mle_control_seconds"] = time.perf_counter() - start
        add(f"control: MLE + {result.steps} steps, greedy", *generate_all(control, tok, sources, s))
        for seed in s.seeds:
            add(f"control: MLE + {result.steps} steps, sample T=1", *sample_all(control, tok, sources, s, seed))

    # 5. time per source through the library calls
    record["timing"] = timing(model, tok, disc, ebm, sources[: s.timing_sources], s)
    record["samples"] = [{"source": sources[i], "reference": references[i]} for i in range(min(s.num_samples, len(sources)))]
    record["wall_seconds"] = time.perf_counter() - t0
    if json_path:
        Path(json_path).write_text(json.dumps(record, indent=1, ensure_ascii=False))
    return record


def report(record: dict) -> None:
    s, d = record["settings"], record["discriminator"]
    split = s["split"]
    print(f"\n{record['sources']} {split} sources, model {record['model']} ({record['parameters'] / 1e6:.2f}M parameters); "
          f"seeds {s['seeds']}; wall {record['wall_seconds']:.0f} s\n")
    sel = d["selected"]
    print(f"Discriminator (ratio head): {d['steps']} steps at batch {s['d_batch']}+{s['d_batch']} (lr {s['d_learning_rate']:g}), {d['seconds']:.0f} s; "
          f"kept step {sel['step']} (best held-out AUC; train_discriminator's lowest-loss pick was step {d['best_step']}); held-out train slice "
          f"({s['d_heldout']} pairs): acc {sel['d_heldout_acc']:.3f}, AUC {sel['d_heldout_auc']:.3f}, loss {sel['d_heldout_loss']:.3f} (ln 2 = 0.693); on {split} (references vs one sample each): acc {d[f'on_{split}']['d_heldout_acc']:.3f}, "
          f"AUC {d[f'on_{split}']['d_heldout_auc']:.3f}{'; WARNED at chance' if d['warned'] else ''}\n")
    print("| decoder | sacreBLEU | distinct outputs | distinct-4 | mean length | s/source |")
    print("|---|---|---|---|---|---|")
    for name, runs in record["rows"].items():
        cells = [mean_sd([r[k] for r in runs]) for k in ("bleu",)] + [mean_sd([r[k] for r in runs]) for k in ("distinct_fraction", "distinct_4")]
        secs = record["seconds"].get(name)
        print(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {mean_sd([r['mean_length'] for r in runs])} | "
              f"{f'{statistics.fmean(secs):.3f}' if secs else '–'} |")
    for name, secs in record["seconds"].items():
        if name not in record["rows"]:
            print(f"\n{name}: {statistics.fmean(secs):.3f} s/source")
    t = record["timing"]
    print(f"\nTime per source through the library calls ({t['sources']} sources, one call each):\n")
    print("| call | s/source |\n|---|---|")
    for name, value in t["seconds_per_source"].items():
        print(f"| {name} | {value:.3f} |")
    print(f"\ngenerate_and_rerank and ResidualEBM.sample drew the same candidates and D's argmax agreed: {t['same_candidates_and_argmax']}")
    shown = ["greedy", f"beam {max(s['num_candidates'])}", "sample T=1", f"rerank by D, N={max(s['num_candidates'])}",
             f"residual EBM T_E=1, N={max(s['num_candidates'])}", "control: D's trunk, sample T=1"]
    print("\nSamples (seed 0):\n\n```")
    for i, sample in enumerate(record["samples"]):
        print(f"source:    {sample['source']}\nreference: {sample['reference']}")
        for name in shown:
            print(f"  {name:<28} {record['rows'][name][0]['outputs'][i]}")
        print()
    print("```")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options every Multi30k benchmark shares: ``--data``, ``--json``, ``--report``, ``--threads``."""
    parser.add_argument("--data", type=Path, default=DATA, help="the multi30k folder (default: ../shared/data/multi30k beside the repository)")
    parser.add_argument("--json", default=None, help="write every figure and sample here")
    parser.add_argument("--report", default=None, help="print the tables of a saved --json run again")
    parser.add_argument("--threads", type=int, default=1)


def reported_or_skipped(cli, report_fn) -> bool:
    """True when there is nothing to run: ``--report`` printed a saved run, or the data folder is absent (said)."""
    if cli.report:
        report_fn(json.loads(Path(cli.report).read_text()))
        return True
    if not cli.data.is_dir():
        print(f"Skipped: the Multi30k folder {cli.data} is absent (it lies beside the repository at ../shared/data on development machines).")
        return True
    return False


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a supervised en->de checkpoint (examples/run_translation.py --supervised --preset cpu --output_dir ...)")
    parser.add_argument("--split", choices=["valid", "test"], default=None)
    parser.add_argument("--max-sources", type=int, default=None, dest="max_sources")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--num-candidates", type=int, nargs="+", default=None, dest="num_candidates")
    parser.add_argument("--d-steps", type=int, default=None, dest="d_steps")
    parser.add_argument("--d-batch", type=int, default=None, dest="d_batch")
    parser.add_argument("--d-heldout", type=int, default=None, dest="d_heldout")
    parser.add_argument("--no-mle-control", action="store_false", dest="mle_control", default=None)
    parser.add_argument("--quick", action="store_true", help="CI smoke size: a tiny model trained in seconds, a few sources")
    add_run_options(parser)
    cli = parser.parse_args(argv)
    if reported_or_skipped(cli, report):
        return
    if not cli.quick and not cli.model:
        parser.error("--model (a supervised checkpoint) is needed unless --quick")
    s = _bench_env.with_overrides(Settings.quick_settings() if cli.quick else Settings(), cli, "split", "max_sources", "seeds", "num_candidates",
                                  "d_steps", "d_batch", "d_heldout", "mle_control")
    begin(cli.threads)
    report(run(s, cli.model, cli.data, cli.json))


if __name__ == "__main__":
    main()
