"""Test kit: no network, a temporary HF_HOME, a locally trained tokenizer and tiny models of every
family built from configs.

Fixtures:
- ``tokenizer``: byte-level BPE trained on a synthetic corpus (session).
- ``make_model(family, warm=True, **config)``: a fresh tiny ``*ForConditionalGeneration``; "warm"
  models got a few dozen teacher-forced steps on the synthetic corpus so that greedy decoding gives
  varied tokens and stops at EOS (random tiny models only repeat their input token).
- ``source_batch``: a padded batch of 4 sources of different lengths.
- ``shared_data``: ``../shared/data`` beside the project, or a skip saying it is absent.
"""

import copy
import os
import shutil
import socket
import tempfile
from pathlib import Path

# Offline before anything imports transformers/datasets/evaluate/huggingface_hub.
_HF_HOME = tempfile.mkdtemp(prefix="hf_seqgan_tests_hf_home_")
os.environ.update(
    HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
    HF_HOME=_HF_HOME, HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false", WANDB_DISABLED="true",
)
# One intra-op thread, here and in the scripts the tests start: the kit's tiny models gain nothing from a
# second thread, and step-by-step decodes run many times slower with two on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_seqgan.synthetic import summarization_pairs  # noqa: E402
from hf_seqgan.tiny import TINY_FAMILIES, build_tiny_model, train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FAMILIES = TINY_FAMILIES

torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Refuse any connection that leaves the machine (loopback stays allowed for local servers)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX):
            raise RuntimeError(f"Test tried to reach the network ({address!r}); tests must stay offline.")
        return real_connect(self, address)

    socket.socket.connect = guarded
    yield
    socket.socket.connect = real_connect


@pytest.fixture(scope="session")
def corpus():
    return summarization_pairs(600, seed=0)


@pytest.fixture(scope="session")
def tokenizer(corpus):
    texts = [p["article"] for p in corpus] + [p["headline"] for p in corpus]
    return train_tokenizer(texts, vocab_size=400)


def _warm_up(model, tokenizer, pairs, steps=100, lr=1e-2, seed=0):
    """A few teacher-forced steps so the tiny model produces varied, EOS-terminated outputs."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(pairs), (16,), generator=g).tolist()
        enc = tokenizer([pairs[i]["article"] for i in idx], return_tensors="pt", padding=True)
        labels = tokenizer([pairs[i]["headline"] for i in idx], return_tensors="pt", padding=True).input_ids
        labels[labels == tokenizer.pad_token_id] = -100
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def _model_cache():
    return {}


@pytest.fixture
def make_model(tokenizer, corpus, _model_cache):
    """``make_model(family, warm=True, seed=0, **config)`` -> a fresh copy of a tiny model."""

    def make(family, warm=True, seed=0, **config):
        key = (family, warm, seed, tuple(sorted(config.items())))
        if key not in _model_cache:
            model = build_tiny_model(family, tokenizer, seed=seed, **config)
            if warm:
                with torch.random.fork_rng():
                    _warm_up(model, tokenizer, corpus, seed=seed)
            _model_cache[key] = model
        return copy.deepcopy(_model_cache[key])

    return make


@pytest.fixture
def source_batch(tokenizer, corpus):
    texts = [corpus[0]["article"], "the bank of peru", corpus[5]["article"], "the team of kenya signed the strike on monday ."]
    return tokenizer(texts, return_tensors="pt", padding=True)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the real corpora folder {SHARED_DATA} is absent (it sits beside the project in CI and on dev machines)")
    return SHARED_DATA
