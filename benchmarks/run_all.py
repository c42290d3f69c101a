"""Every speed benchmark of the project in one run, gathered into one table.

Usage::

    python benchmarks/run_all.py --quick          # seconds per benchmark: the CI smoke run of all of them
    python benchmarks/run_all.py                  # the full benchmarks, a tiny and a t5-small column (hours on 2 shared cores)
    python benchmarks/run_all.py --sizes tiny     # the tiny column only (tens of minutes)
    python benchmarks/run_all.py --only rollout decoding --repeats 5 --json all.json

Each benchmark script (``bench_rollout``, ``bench_decoding``, ``bench_scheduled_sampling`` (its
speed part), ``bench_professor_forcing``, ``bench_adversarial``, ``bench_grpo``; a script not in the checkout is
skipped, saying so) runs as its own subprocess with ``--json PATH`` and ``--size SIZE`` (or
``--quick``), one after the other, so that none disturbs another's timings. Without ``--quick``
each size of ``--sizes`` (default ``tiny t5-small``; ``bart-base`` too where memory allows) is one
column of the table: the model shapes are the public configs' (``_bench_env.REAL_SHAPES``). A script writes one row per figure::

    {"benchmark": str, "figure": str, "baseline": str, "ratios": [float, ...], "goal": str | null}

where ``ratios`` holds the figure over its baseline *measured in the same run*, once per repeat.
The table gives min / median / max over the repeats and whether the median meets the goal (goals
are ``"<= x"`` or ``">= x"`` on the ratio, a trailing "x" allowed). Quality experiments (``bench_oracle.py``, the quality
part of ``bench_scheduled_sampling.py``) are not speed figures and are not run here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, extra arguments); the scheduled-sampling script's quality part is not a speed figure
BENCHMARKS = {
    "rollout": ("bench_rollout.py", ["--threads", "1"]),
    "decoding": ("bench_decoding.py", []),
    "scheduled_sampling": ("bench_scheduled_sampling.py", ["--part", "speed"]),
    "professor_forcing": ("bench_professor_forcing.py", []),
    "adversarial": ("bench_adversarial.py", []),
    "grpo": ("bench_grpo.py", []),
}


def meets(goal: str | None, value: float) -> str:
    """``"yes"``/``"no"`` for a goal ``"<= x"`` or ``">= x"`` on ``value``; ``""`` without a goal."""
    if not goal:
        return ""
    text = goal.replace(" ", "").rstrip("x×")  # "<= 4x" is "<= 4" on the ratio
    for op, test in (("<=", lambda a, b: a <= b), (">=", lambda a, b: a >= b)):
        if text.startswith(op):
            try:
                return "yes" if test(value, float(text[len(op):])) else "**no**"
            except ValueError:
                break
    return f"? ({goal})"


def check_rows(rows, script: str) -> list[dict]:
    """The rows a script wrote, checked against the schema (a clear error naming the script)."""
    if not isinstance(rows, list):
        raise ValueError(f"{script} --json wrote {type(rows).__name__}, expected a list of rows.")
    for row in rows:
        missing = {"benchmark", "figure", "baseline", "ratios", "goal"} - set(row)
        if missing or not row["ratios"] or not all(isinstance(r, (int, float)) for r in row["ratios"]):
            raise ValueError(f"{script} --json wrote a malformed row {row!r} (missing {sorted(missing)} or no numeric ratios).")
    return rows


def run_one(name: str, quick: bool, timeout: float, repeats: int | None = None, size: str | None = None) -> tuple[list[dict], str]:
    """Run one benchmark script (at ``size``, unless quick); its rows, each tagged with its size, and a status line."""
    script, extra = BENCHMARKS[name]
    path = HERE / script
    if not path.exists():
        return [], f"{name}: skipped ({script} is not in this checkout)"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(path), *extra, *(["--quick"] if quick else []), *(["--size", size] if size and not quick else []),
               *(["--repeats", str(repeats)] if repeats else []), "--json", str(out)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [], f"{name}: **failed**, still running after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            return [], f"{name}: **failed** (exit {proc.returncode}, {seconds:.0f} s): {' '.join(cmd[1:])}\n{tail}"
        if not out.exists():
            return [], f"{name}: **failed**: {script} does not write --json rows yet"
        rows = check_rows(json.loads(out.read_text()), script)
    label = "tiny" if quick or not size else size
    for row in rows:
        row["size"] = label
    return rows, f"{name}{'' if quick else f' ({label})'}: {len(rows)} figures in {seconds:.0f} s"


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | figure | baseline (same run) | ratio min | ratio median | ratio max | repeats | goal | median meets goal |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = row["ratios"]
        med = statistics.median(r)
        lines.append(f"| {row['benchmark']} | {row['figure']} | {row['baseline']} | {min(r):.2f} | **{med:.2f}** | {max(r):.2f} | {len(r)} "
                     f"| {row['goal'] or '–'} | {meets(row['goal'], med)} |")
    return "\n".join(lines)


def size_table(rows: list[dict], sizes: list[str]) -> str:
    """One line per figure, one column per size: ratio median (min – max) over the repeats, and whether it meets the goal."""
    figures: dict = {}
    for row in rows:
        figures.setdefault((row["benchmark"], row["figure"], row["baseline"]), {})[row["size"]] = row
    lines = ["| benchmark | figure | baseline (same run) | " + " | ".join(f"{s}: median (min – max), repeats" for s in sizes) + " | goal | meets goal |",
             "|---|---|---|" + "---|" * len(sizes) + "---|---|"]
    for (bench, figure, baseline), by_size in figures.items():
        cells, goal, verdicts = [], None, []
        for s in sizes:
            row = by_size.get(s)
            if row is None:
                cells.append("–")
                continue
            r, goal = row["ratios"], goal or row["goal"]
            med = statistics.median(r)
            cells.append(f"**{med:.2f}** ({min(r):.2f} – {max(r):.2f}), {len(r)}")
            if row["goal"]:
                verdicts.append(f"{s}: {meets(row['goal'], med)}")
        lines.append(f"| {bench} | {figure} | {baseline} | " + " | ".join(cells) + f" | {goal or '–'} | {', '.join(verdicts)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark at its CI smoke size")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--sizes", nargs="+", choices=("tiny", "t5-small", "bart-base"), default=["tiny", "t5-small"],
                        help="model sizes, one column each (ignored with --quick, which runs the tiny smoke sizes)")
    parser.add_argument("--repeats", type=int, default=None, help="passed to every script (each has its own default)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default 600 with --quick, 5400 without)")
    parser.add_argument("--json", default=None, help="also write all rows (with the machine line) to this JSON file")
    args = parser.parse_args(argv)
    timeout = args.timeout or (600 if args.quick else 5400)
    names = args.only or list(BENCHMARKS)
    machine = (f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average at the start "
               f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
    print(machine, flush=True)
    sizes = ["tiny"] if args.quick else list(dict.fromkeys(args.sizes))
    rows, status, failed = [], [], False
    for size in sizes:
        for name in names:
            got, line = run_one(name, args.quick, timeout, args.repeats, size)
            print(line, file=sys.stderr, flush=True)
            failed |= "**failed**" in line
            rows += got
            status.append(line)
    print(f"\n### Speed figures{' (--quick sizes: smoke run, not figures to quote)' if args.quick else ''}: "
          "each a ratio against its baseline measured in the same run, over the repeats\n")
    print(table(rows) if len(sizes) == 1 else size_table(rows, sizes))
    print("\n" + "\n".join(f"- {line}" for line in status))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "quick": args.quick, "sizes": sizes, "rows": rows, "status": status}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
