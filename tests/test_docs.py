"""Every ```python block of README.md and docs/*.md runs as it stands.

The blocks of one file run in order in one namespace (a block may use what the blocks before it in
the same file built), in a fresh process started in a temporary working directory, offline (the
offline variables, a temporary ``HF_HOME``, and a socket guard that refuses non-loopback
connections), on one torch thread, and within the file's time budget. An error names the Markdown
file and its line: each block is compiled with the file as its name and its own line numbers.
```bash``` / ```text``` blocks and bare ``` blocks (shell commands, printed output) are not run.
"""

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
# seconds per file on 2 busy cores; the blocks' step counts keep every file well inside its budget
BUDGET_S = {"decoding.md": 90, "evaluation.md": 60}
DEFAULT_BUDGET_S = 45

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
# "budget"}), one JSON reply line out ({"rc", "seconds", "timed_out"}); the child's output goes to "log".
_SERVER = r"""
import json, os, signal, socket, sys, time, traceback
real_connect = socket.socket.connect
def guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX):
        raise RuntimeError(f"a doc block tried to reach the network ({address!r})")
    return real_connect(self, address)
socket.socket.connect = guarded
import torch
torch.set_num_threads(1)
import datasets, transformers, hf_seqgan, hf_seqgan.trainers  # what nearly every file imports first

def run(request):
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
    deadline, timed_out = began + request["budget"], False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status, timed_out = -1, True
            break
        time.sleep(0.05)
    rc = os.waitstatus_to_exitcode(status) if status != -1 else -9
    print(json.dumps({"rc": rc, "seconds": round(time.monotonic() - began, 1), "timed_out": timed_out}), flush=True)
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


def test_every_doc_with_python_has_blocks_found():
    assert {p.name for p in DOCS} >= {"README.md", "decoding.md", "evaluation.md", "hub.md"}
    assert python_blocks(ROOT / "README.md"), "the README's python blocks were not found"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, doc_server):
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no python block")
    log = tmp_path / "output.txt"
    budget = BUDGET_S.get(path.name, DEFAULT_BUDGET_S)
    request = {"path": str(path), "blocks": blocks, "cwd": str(tmp_path), "log": str(log), "budget": budget}
    doc_server.stdin.write(json.dumps(request) + "\n")
    doc_server.stdin.flush()
    reply = doc_server.stdout.readline()
    assert reply, "the doc server died"
    result = json.loads(reply)
    output = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    last = [line for line in output.splitlines() if line.startswith("--- ")][-1:]
    assert not result["timed_out"], f"{path.name}: its blocks ran past the {budget} s budget (last started: {last})\n{output[-3000:]}"
    assert result["rc"] == 0, f"{path.name} (block {last}):\n{output[-5000:]}"
