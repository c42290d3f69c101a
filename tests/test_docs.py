"""Every ```python block of README.md and docs/*.md runs as it stands.

The blocks of one file run in order in one namespace (a block may use what the blocks before it in
the same file built), in a process of the file's own started in a temporary working directory,
offline (the offline variables, a temporary ``HF_HOME``, a socket guard that refuses non-loopback
connections), on one torch thread and within the file's budget of CPU time. A failure names the
Markdown file and line: each block is compiled under the file's name at its own line numbers.
```bash``` / ```text``` blocks and bare ``` blocks (shell commands, printed output) are not run."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# CPU seconds per file, imports excluded (the server has them loaded). Measured on one thread of the
# 2-core development machine: decoding.md 18, README.md and adversarial.md 6, evaluation.md 5, the
# others under 4; about 45 in all, two to three minutes of wall clock while other jobs share the
# cores. CPU time, not the wall clock, so that a busy machine does not fail the test; a file that
# waits (using no CPU) is stopped after 60 s + WALL_LIMIT_FACTOR times its budget of wall clock.
BUDGET_S = {"README.md": 15, "adversarial.md": 15, "decoding.md": 40, "evaluation.md": 15}
DEFAULT_BUDGET_S = 10
WALL_LIMIT_FACTOR = 6

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^`]*)$")


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(first line, code)`` of each fenced ```python block of a Markdown file (indented ones, in
    list items, dedented); ``first line`` is the 1-based line of the block's first code line."""
    blocks, current, start, fence = [], None, 0, ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _FENCE.match(line)
        if current is None:
            if match:
                fence = match["fence"]
                current = [] if match["info"].strip().split(" ")[0] == "python" else False
                start = number + 1
        elif match and match["fence"] == fence and not match["info"].strip():
            if current is not False:
                blocks.append((start, textwrap.dedent("\n".join(current))))
            current = None
        elif current is not False:
            current.append(line)
    assert current is None, f"{path}: a fence opened at line {start - 1} is never closed"
    return blocks


# A server that imports the heavy packages once, then forks one child per Markdown file: each file
# still runs in a process of its own (its own namespace, working directory and globals), without paying
# the ~8 s of imports again. Protocol: one JSON request line in ({"path", "blocks", "cwd", "log",
# "budget", "wall_limit"}), one JSON reply line out ({"rc", "cpu_s", "wall_s", "over_budget", "hung"}); the
# child's output goes to "log".
_SERVER = r"""
import json, os, resource, signal, socket, sys, time, traceback
real_connect = socket.socket.connect
def guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX):
        raise RuntimeError(f"a doc block tried to reach the network ({address!r})")
    return real_connect(self, address)
socket.socket.connect = guarded
replies = os.fdopen(os.dup(1), "w")  # the replies' own channel: what imports or blocks print goes to stderr or the log
os.dup2(2, 1)
import torch
torch.set_num_threads(1)
import datasets, transformers, hf_seqgan, hf_seqgan.trainers  # what nearly every file imports first

def run(request):
    # the budget is CPU seconds (the kernel stops the child past it): a busy machine slows the wall clock, not this
    resource.setrlimit(resource.RLIMIT_CPU, (request["budget"], request["budget"] + 5))
    os.chdir(request["cwd"])
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.argv = [request["path"]]
    namespace = {"__name__": "__main__"}
    try:
        for start, code in request["blocks"]:
            print(f"--- {request['path']}:{start}", flush=True)
            exec(compile("\n" * (start - 1) + code, request["path"], "exec"), namespace)
        status = 0
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


for line in sys.stdin:
    request = json.loads(line)
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:
        run(request)
    deadline, hung = began + request["wall_limit"], False  # a child that waits on something uses no CPU
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            hung = True
            break
        time.sleep(0.05)
    rc = os.waitstatus_to_exitcode(status)
    print(json.dumps({"rc": rc, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "wall_s": round(time.monotonic() - began, 1),
                      "over_budget": rc == -signal.SIGXCPU or rc == -signal.SIGKILL and not hung, "hung": hung}), file=replies, flush=True)
"""


@pytest.fixture(scope="module")
def doc_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("docs_hf_home")
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false", WANDB_DISABLED="true",
        OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    server = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    yield server
    server.stdin.close()
    server.wait(timeout=30)


def test_python_blocks_are_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\na = 1\n```\n```bash\nls\n```\n- item:\n\n  ```python\n  if a:\n      b = a\n  ```\n"
                    "````\n```python\nnot code\n```\n````\n```\nprinted\n```\n", encoding="utf-8")
    assert python_blocks(page) == [(3, "a = 1"), (11, "if a:\n    b = a")]
    assert {p.name for p in DOCS} >= {"README.md", "decoding.md", "evaluation.md", "hub.md"}
    assert len(python_blocks(ROOT / "README.md")) >= 10


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, doc_server):
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no python block")
    log = tmp_path / "output.txt"
    budget = BUDGET_S.get(path.name, DEFAULT_BUDGET_S)
    request = {"path": str(path), "blocks": blocks, "cwd": str(tmp_path), "log": str(log), "budget": budget,
               "wall_limit": 60 + WALL_LIMIT_FACTOR * budget}
    doc_server.stdin.write(json.dumps(request) + "\n")
    doc_server.stdin.flush()
    reply = doc_server.stdout.readline()
    assert reply, "the doc server died"
    result = json.loads(reply)
    print(f"{path.name}: {result['cpu_s']} s of CPU, {result['wall_s']} s")
    output = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    last = [line for line in output.splitlines() if line.startswith("--- ")][-1:]
    assert not result["hung"], f"{path.name}: stopped after {result['wall_s']} s, {result['cpu_s']} s of CPU (waiting on something?); last started: {last}\n{output[-3000:]}"
    assert not result["over_budget"], f"{path.name}: its blocks ran past the budget of {budget} CPU seconds (last started: {last})\n{output[-3000:]}"
    assert result["rc"] == 0, f"{path.name} (block {last}):\n{output[-5000:]}"
