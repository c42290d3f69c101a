"""Timing and reporting shared by the speed benchmarks: every figure is a ratio against a baseline
timed side by side in the same run.

- :func:`interleaved` times several calls, each once per repeat, in an order rotated from repeat to
  repeat (with two calls: alternating), with the garbage collector paused; :func:`timed` is one
  such call on its own.
- :func:`ratios` divides one call's time by another's *within each repeat*; :func:`stats` /
  :func:`fmt` give min / median / max.
- :func:`ratio_header` / :func:`ratio_rows` print the Markdown table of median time and ratio
  median / min / max that the step-time benchmarks share.
- :func:`json_row` is one figure in the form ``run_all.py`` gathers (``--json``), and
  :func:`write_rows` writes them; :func:`machine_line` says what the run ran on, and :func:`begin`
  (torch threads, quiet transformers logging, that line) starts a run.

Import it after ``_bench_env`` (the scripts' folder is on ``sys.path`` when they run as scripts).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import time

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, clock: str = "wall"):
    """``(seconds, result)`` of one call on ``CLOCKS[clock]``, with the garbage collector paused (as timeit does)."""
    now = CLOCKS[clock]
    gc.disable()
    try:
        start = now()
        result = fn()
        return now() - start, result
    finally:
        gc.enable()


def interleaved(calls: dict, repeats: int, *, clock: str = "wall", before=None) -> dict[str, list[float]]:
    """Seconds per call of each function, all run once per repeat in an order rotated from repeat to
    repeat, GC paused; ``before()``, when given, runs untimed before every call."""
    names = list(calls)
    times = {name: [] for name in names}
    now = CLOCKS[clock]
    gc.disable()
    try:
        for r in range(repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                if before is not None:
                    before()
                start = now()
                calls[name]()
                times[name].append(now() - start)
    finally:
        gc.enable()
    return times


def ratios(times: dict, name: str, baseline: str) -> list[float]:
    """``times[name] / times[baseline]``, repeat by repeat."""
    return [t / b for t, b in zip(times[name], times[baseline])]


def stats(values) -> tuple[float, float, float]:
    """Min, median, max."""
    return min(values), statistics.median(values), max(values)


def fmt(triple, spec: str = ",.0f") -> str:
    return " / ".join(format(v, spec) for v in triple)


def ratio_header(*first_columns: str, unit: str = "median ms/step") -> None:
    """The header of :func:`ratio_rows`' table: ``first_columns``, then time and ratio median / min / max."""
    columns = [*first_columns, unit, "ratio median", "ratio min", "ratio max"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def ratio_rows(times: dict, baseline: str, *cells: str) -> dict[str, list[float]]:
    """Print one row per entry of ``times`` (``cells``, the name, median ms, ratio median / min / max
    against ``baseline`` within each repeat) and return ``{name: ratios}``."""
    out = {}
    for name, values in times.items():
        out[name] = r = ratios(times, name, baseline)
        low, median, high = stats(r)
        print("| " + " | ".join([*cells, name]) + f" | {1000 * statistics.median(values):.1f} | {median:.2f} | {low:.2f} | {high:.2f} |")
    return out


def json_row(benchmark: str, figure: str, baseline: str, ratios, goal=None) -> dict:
    """One figure in the form ``benchmarks/run_all.py`` gathers: every per-repeat ratio against its baseline."""
    return {"benchmark": benchmark, "figure": figure, "baseline": baseline, "ratios": [float(r) for r in ratios], "goal": goal}


def write_rows(path: str | None, rows: list[dict]) -> None:
    """Write ``rows`` (:func:`json_row`) to ``path`` as JSON (``--json``); nothing without a path."""
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


def machine_line(clock: str | None = None) -> str:
    """The processor, threads, library versions and load average of this run, in one line."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), cpu)
    except OSError:
        pass
    return (
        f"Machine: {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__} with {torch.get_num_threads()} thread(s)"
        + (f", {clock} clock" if clock else "")
        + f", transformers {transformers.__version__}, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )


def begin(threads: int, clock: str | None = None) -> None:
    """Start a run: ``threads`` torch threads, transformers' logging at errors only, the machine line."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    print(machine_line(clock))
