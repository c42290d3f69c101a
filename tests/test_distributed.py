"""AdversarialTrainer and CycleTrainer in a 2-process `torch.distributed` run (gloo, CPU) against one
process with the doubled batch.

The test saves a tiny warm BART, its tokenizer and 16 training rows, starts two worker processes
(per-device batch 8) that rendezvous over loopback through the usual ``RANK`` / ``WORLD_SIZE`` /
``MASTER_ADDR`` / ``MASTER_PORT`` variables (so the Trainer and accelerate set up DDP with gloo, as
under ``torchrun``), trains the same configuration in the test's own process with batch 16, and
compares. The workers are *forked* from the test process rather than started by
``python -m torch.distributed.run``: a launched process spends 20-30 s importing torch and
transformers on a loaded 2-core machine, a forked one inherits them. The standard launcher runs the
same workers on a folder this test prepared (``model/``, ``tokenizer/``, ``data/``)::

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/test_distributed.py FOLDER

Why the two layouts can agree: the 16 rows are one global batch per optimizer step in both (two
steps = two epochs), so every step sees the same rows, only split across processes. Everything
computed per row must then be independent of the layout:

- decoding is greedy (``do_sample=False``; in the Gumbel mode straight-through without noise), so
  a row's output does not depend on which random numbers its process drew, and there is no dropout
  (the tiny models have none; ``discriminator_dropout=0``);
- the rewards and the discriminator's scores are per row; the moving-average baseline uses the
  mean reward over *every* process (the trainer all-reduces it), the MLE term the label count over
  every process, and DDP averages the processes' gradients, so the per-row means equal the 16-row
  means of the single process;
- the optimizers are SGD, so a tiny difference in summation order stays tiny (Adam would turn a
  near-zero gradient's rounding noise into a full-size step).

What is checked, for REINFORCE (discriminator reward, moving-average baseline, MLE term) and for
the Gumbel mode (which runs the unwrapped generator step by step, so the trainer averages the
generator's gradients itself):

- both ranks end with identical generator and discriminator weights (the discriminator's update
  goes through its DDP wrapper, so its gradients are all-reduced: without that the ranks'
  discriminators drift apart after the first step);
- those weights equal the single-process run's within 2e-5 (measured: 1e-7 for the generator, 3e-6 for the
  discriminator; with the discriminator's forward outside DDP the ranks differ by 5e-3, and without
  the Gumbel gradient average the generators by 0.1), and the generator moved from the start;
- the moving-average baseline's state is the same as with one process.

CycleTrainer (REINFORCE reconstruction, the discriminator's reward and update, denoising without
noise, greedy back-translation) runs every term on G outside its DDP wrapper and averages G's
gradients itself; D's update goes through D's wrapper, R's terms through R's. With D's update on
the unwrapped D, or G's gradients not averaged, the ranks drift apart.
"""

import multiprocessing
import os
import socket
import sys
import traceback
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "reinforce": dict(generator_update="reinforce", reward="logprob", baseline="moving_average", mle_weight="0.5"),
    "gumbel": dict(generator_update="gumbel", mle_weight="0.5", tau="0.7"),
}
#: CycleTrainer: REINFORCE reconstruction + the discriminator's reward and update + denoising (no noise,
#: so that a row's input does not depend on the batch layout) + greedy back-translation
CYCLE = dict(reconstruction_weight="1.0", adversarial_weight="1.0", denoising_weight="0.5", backtranslation_weight="0.5",
             reconstruction_update="reinforce", adversarial_update="reinforce", baseline="moving_average", reward="logprob",
             word_shuffle=0.0, word_dropout=0.0, word_blank=0.0)
PER_DEVICE_BATCH = 8


def _train(folder: Path, mode: str, batch: int, output_dir: str) -> dict:
    from datasets import load_from_disk
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from hf_seqgan.trainers import AdversarialConfig, AdversarialTrainer, CycleConfig, CycleTrainer

    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    model = AutoModelForSeq2SeqLM.from_pretrained(folder / "model")
    common = dict(output_dir=output_dir, per_device_train_batch_size=batch, max_steps=2, do_sample=False, max_new_tokens=8,
                  optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", discriminator_optimizer="sgd",
                  discriminator_learning_rate=5.0, discriminator_dropout=0.0, use_cpu=True, report_to="none", save_strategy="no",
                  logging_steps=1, seed=0, dataloader_num_workers=0, disable_tqdm=True)
    data = load_from_disk(str(folder / "data"))
    if mode == "cycle":
        args = CycleConfig(**common, reconstructor_optimizer="sgd", reconstruction_max_new_tokens=8, **CYCLE)
        x = data.select_columns(["input_ids"])
        y = data.select_columns(["labels"]).rename_column("labels", "input_ids")
        trainer = CycleTrainer(model, args, train_dataset=x, target_domain_dataset=y, processing_class=tokenizer)
    else:
        trainer = AdversarialTrainer(model, args=AdversarialConfig(**common, **MODES[mode]), train_dataset=data, processing_class=tokenizer)
    trainer.train()
    state = {
        "logs": [h for h in trainer.state.log_history if "output_length" in h],
        "generator": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
        "discriminator": {n: p.detach().clone() for n, p in trainer.auxiliary("discriminator").unwrapped.named_parameters()},
        "world_size": trainer.args.world_size,
    }
    if mode == "cycle":
        state["reconstructor"] = {n: p.detach().clone() for n, p in trainer.auxiliary("reconstructor").unwrapped.named_parameters()}
        state["baseline"] = trainer.baselines["adversarial"].value
    else:
        state["baseline"] = trainer.baseline.value
    return state


@pytest.fixture
def train_rows(tokenizer, corpus):
    from tests.test_adversarial import tokenized_pairs

    return tokenized_pairs(tokenizer, corpus[:16])


def _worker(folder: str) -> None:
    """One process of the run (RANK etc. in the environment): train every mode, save this rank's weights."""
    folder = Path(folder)
    rank = int(os.environ["RANK"])
    for mode in [*MODES, "cycle"]:
        state = _train(folder, mode, PER_DEVICE_BATCH, str(folder / f"out-{mode}"))
        torch.save(state, folder / f"{mode}-rank{rank}.pt")


def _forked_worker(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    from accelerate.state import AcceleratorState, GradientState

    # the test process may have run a single-process Trainer already: its accelerate state is inherited
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.set_num_threads(1)
    code = 0
    try:
        _worker(folder)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # leave the forked pytest process without running its exit handlers


def _launch(folder: Path, world_size: int = 2, timeout: float = 240.0) -> None:
    """Fork ``world_size`` worker processes that rendezvous over loopback and train with gloo."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_forked_worker, args=(rank, world_size, port, str(folder))) for rank in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * world_size, f"worker exit codes {[p.exitcode for p in procs]} (tracebacks above)"


def _assert_close(a: dict, b: dict, what: str, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[n] - b[n]).abs().max().item() for n in a)
    assert worst <= atol, f"{what}: largest difference {worst:.3g} > {atol}"


def test_two_processes_equal_one_process_with_the_doubled_batch(make_model, tokenizer, train_rows, tmp_path):
    model = make_model("bart")
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    train_rows.save_to_disk(str(tmp_path / "data"))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}

    _launch(tmp_path)

    for mode in [*MODES, "cycle"]:
        ranks = [torch.load(tmp_path / f"{mode}-rank{r}.pt", weights_only=False) for r in range(2)]
        assert [s["world_size"] for s in ranks] == [2, 2]
        single = _train(tmp_path, mode, 2 * PER_DEVICE_BATCH, str(tmp_path / f"single-{mode}"))
        for part in ("generator", "discriminator") + (("reconstructor",) if mode == "cycle" else ()):
            _assert_close(ranks[0][part], ranks[1][part], f"{mode}: {part} of rank 0 vs rank 1", atol=0.0)
            _assert_close(ranks[0][part], single[part], f"{mode}: {part}, 2 processes x 8 vs 1 process x 16", atol=2e-5)
        # the method's figures are averaged over both processes' rows: those that are per-row means equal the single run's
        assert len(ranks[0]["logs"]) == len(single["logs"]) == 2
        for key in ("output_length", "d_acc_real", "d_acc_fake"):
            for two, one, other in zip(ranks[0]["logs"], single["logs"], ranks[1]["logs"]):
                assert key in two and abs(two[key] - one[key]) < 1e-6 and two[key] == other[key], (mode, key, two.get(key), one.get(key))
        moved = max((single["generator"][n] - start[n]).abs().max().item() for n in start)
        assert moved > 1e-3, f"{mode}: the generator did not move ({moved})"
        if mode == "cycle" or MODES[mode].get("baseline") == "moving_average":
            assert abs(ranks[0]["baseline"] - single["baseline"]) < 1e-6 * max(1.0, abs(single["baseline"])) and ranks[0]["baseline"] == ranks[1]["baseline"]


if __name__ == "__main__":
    # the same workers under the standard launcher, on a folder the test prepared (model/, tokenizer/, data/):
    #   python -m torch.distributed.run --standalone --nproc_per_node 2 tests/test_distributed.py FOLDER
    _worker(sys.argv[1])
