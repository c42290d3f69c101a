"""Model cards and Hub pushes (hf_seqgan.hub through BaseTrainer).

Pushes run the real huggingface_hub client end to end against a small local HTTP server speaking
the Hub's upload endpoints (repo creation, YAML validation, preupload, NDJSON commits with base64
contents); any other request fails the test. Nothing leaves the machine.
"""

import base64
import http.server
import io
import json
import socket
import threading
import time

import pytest
import yaml
from datasets import Dataset, DatasetInfo
from huggingface_hub import ModelCard

from hf_seqgan.hub import HubPushError, describe_schedule, model_card
from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer
from hf_seqgan.trainers.scheduled_sampling import ScheduledSamplingConfig, ScheduledSamplingTrainer

QUIET = dict(use_cpu=True, disable_tqdm=True, report_to="none", per_device_train_batch_size=4, per_device_eval_batch_size=8, logging_steps=1)


class HubServer(http.server.ThreadingHTTPServer):
    """The Hub endpoints the client uses to create a repo and commit files; records what arrived."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.created, self.commits, self.unexpected, self.tokens = [], [], [], set()
        self.files: dict[str, dict[str, bytes]] = {}  # repo -> path -> content (the latest)
        self.uploads: list[tuple[str, str, bytes]] = []  # every file of every commit: (repo, path, content)
        self.stall, self.released = set(), threading.Event()  # paths taken but never answered (until released)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, payload, status=200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _unexpected(self):
        self.server.unexpected.append(f"{self.command} {self.path}")
        self._reply({"error": f"unexpected request {self.command} {self.path}"}, status=404)

    def do_GET(self):
        if self.path == "/api/agent-harnesses":  # the client's agent registry, fetched once a day
            return self._reply({"standardEnvVars": [], "harnesses": {}})
        self._unexpected()

    do_HEAD = do_PUT = do_DELETE = _unexpected

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server, path = self.server, self.path
        server.tokens.add(self.headers.get("Authorization"))
        if path in server.stall:  # a server that takes the request and never answers
            server.released.wait()
            return
        if path == "/api/repos/create":
            request = json.loads(body)
            repo = f"{request['organization']}/{request['name']}"
            server.created.append({"repo": repo, "visibility": request.get("visibility")})
            server.files.setdefault(repo, {})
            return self._reply({"url": f"{server.url}/{repo}", "name": request["name"]})
        if path == "/api/validate-yaml":
            yaml.safe_load(json.loads(body)["content"].split("---")[1])  # the card's metadata must parse
            return self._reply({"errors": [], "warnings": []})
        if path.startswith("/api/models/") and path.endswith("/preupload/main"):
            files = json.loads(body)["files"]
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if path.startswith("/api/models/") and path.endswith("/commit/main"):
            repo = path[len("/api/models/"):-len("/commit/main")]
            if repo not in server.files:
                return self._reply({"error": f"{repo} was never created"}, status=404)
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            summary = next(line["value"]["summary"] for line in lines if line["key"] == "header")
            paths = []
            for line in lines:
                if line["key"] == "file":
                    server.files[repo][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                    server.uploads.append((repo, line["value"]["path"], server.files[repo][line["value"]["path"]]))
                    paths.append(line["value"]["path"])
            server.commits.append({"repo": repo, "summary": summary, "paths": paths})
            return self._reply({"commitUrl": f"{server.url}/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40, "pullRequestUrl": None})
        self._unexpected()


@pytest.fixture
def hub(monkeypatch):
    """A local Hub: huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import, so its constants are patched."""
    from huggingface_hub import constants

    server = HubServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_dummy_token_for_tests")
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()
    assert not server.unexpected, f"the client made requests the test server does not expect: {server.unexpected}"


@pytest.fixture
def data(tokenizer, corpus):
    pairs = corpus[:16]
    info = DatasetInfo(dataset_name="synthetic-headlines", description="Synthetic article/headline pairs.")
    return Dataset.from_dict({"input_ids": [tokenizer(p["article"]).input_ids[:48] for p in pairs],
                              "labels": [tokenizer(p["headline"]).input_ids[:12] for p in pairs]}, info=info)


def _metadata(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_schedule_readings():
    assert describe_schedule("linear:1,0,1000") == "linear from 1 to 0 over 1000 steps, then 0"
    assert describe_schedule("0.5") == "constant 0.5"
    assert "0.5 at step 6908" in describe_schedule("inverse_sigmoid:k=1000")  # k ln k
    assert "halfway after 693 steps" in describe_schedule("exponential:start=1,rate=0.999,end=0")
    assert describe_schedule("piecewise:0=0,100=1") == "linear between 0 at step 0, 1 at step 100; constant outside"


def test_scheduled_sampling_card(make_model, tokenizer, data, tmp_path):
    args = ScheduledSamplingConfig(str(tmp_path / "run"), gold_probability="linear:1,0,4", prediction="sample", max_steps=2,
                                   save_strategy="no", **QUIET)
    trainer = ScheduledSamplingTrainer(make_model("bart", warm=False), args, train_dataset=data, eval_dataset=data, processing_class=tokenizer)
    trainer.state.global_step = 2  # as if trained (training itself is covered by the push test below)
    metrics = trainer.evaluate()
    from accelerate.state import AcceleratorState, GradientState, PartialState

    shared = [(cls, dict(cls._shared_state)) for cls in (PartialState, AcceleratorState, GradientState)]
    paths = trainer.create_model_card(language="en", license="mit", tags=["test"], dataset_args="toy")
    # a card written by a checkpoint save mid-training must leave the running accelerator alone
    assert all(cls._shared_state == state for cls, state in shared)
    assert paths == [str(tmp_path / "run" / "README.md")]
    trainer.save_model()  # writes the card again, with the remembered language/license
    card = ModelCard.load(tmp_path / "run" / "README.md")
    meta = _metadata((tmp_path / "run" / "README.md").read_text())
    assert meta["language"] == "en" and meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert {"hf_seqgan", "scheduled-sampling", "bart", "test"} <= set(meta["tags"])
    assert meta["datasets"] == ["synthetic-headlines"]
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["type"] == "synthetic-headlines" and result["dataset"]["config"] == "toy"
    assert {m["type"]: m["value"] for m in result["metrics"]}["loss"] == pytest.approx(metrics["eval_loss"], abs=1e-5)
    assert card.data.eval_results[0].metric_type == "loss"
    text = card.text
    # the method, its papers (the parallel mode is Mihaylova & Martins') and the Caccia et al. caveat
    assert "scheduled sampling" in text and "@inproceedings{bengio2015scheduled" in text and "@inproceedings{mihaylova2019scheduled" in text
    assert "Language GANs Falling Short" in text and "lower sampling temperature" in text
    # non-default knobs, with the schedule spelled out and read
    assert "| `prediction` | `sample` | `argmax` | How the model's token is chosen: 'argmax', 'sample' or 'top_k' |" in text
    assert "| `gold_probability` | `linear:start=1,end=0,steps=4` | `inverse_sigmoid:k=1000` | linear from 1 to 0 over 4 steps, then 0 |" in text
    assert "0.5 at step 2 (end of this run)" in text
    assert "| `max_steps` | `2` | `-1` |" in text and "output_dir" not in text
    assert "`synthetic-headlines`, 16 rows" in text and "Synthetic article/headline pairs." in text
    assert "- transformers 5." in text and "- torch " in text and "- hf_seqgan " in text
    assert "built from its configuration" in text  # no pretrained base: no base_model in the metadata
    assert "base_model" not in meta


@pytest.mark.parametrize("update, cited, absent", [("gumbel", ["nie2019relgan", "jang2017categorical"], "yu2017seqgan"),
                                                   ("reinforce", ["yu2017seqgan", "rennie2017self"], "nie2019relgan")])
def test_adversarial_cards_cite_by_mode(make_model, tokenizer, data, tmp_path, update, cited, absent):
    args = AdversarialConfig(str(tmp_path), generator_update=update, baseline="self_critical", save_strategy="no", **QUIET)
    trainer = AdversarialTrainer(make_model("bart", warm=False), args=args, train_dataset=data, processing_class=tokenizer)
    for name in (None, "discriminator"):
        text = str(model_card(trainer, name=name, dataset_tags="my/data"))
        assert all(f"@inproceedings{{{key}," in text for key in cited) and absent not in text
        assert _metadata(text)["datasets"] == ["my/data"]
    assert "eval_results" not in _metadata(text) and "model-index" not in _metadata(str(model_card(trainer)))


def test_cards_of_other_auxiliaries(make_model, tokenizer, data, tmp_path):
    """A plain-module discriminator (professor forcing's, on hidden states) and a seq2seq reconstructor (cycle)."""
    from hf_seqgan.trainers.professor_forcing import ProfessorForcingConfig, ProfessorForcingTrainer

    args = ProfessorForcingConfig(str(tmp_path / "pf"), save_strategy="no", **QUIET)
    trainer = ProfessorForcingTrainer(make_model("bart", warm=False), args, train_dataset=data, processing_class=tokenizer)
    trainer.save_model()
    text = (tmp_path / "pf" / "discriminator" / "README.md").read_text()
    assert "@inproceedings{lamb2016professor," in text and "HiddenStateDiscriminator.from_pretrained(" in text
    assert "free-running hidden states" in text and "A training companion only" in text and "null" not in text
    cycle = pytest.importorskip("hf_seqgan.trainers.cycle")
    args = cycle.CycleConfig(str(tmp_path / "cy"), save_strategy="no", **QUIET)
    trainer = cycle.CycleTrainer(make_model("bart", warm=False), args, train_dataset=data.remove_columns("labels"),
                                 target_domain_dataset=data.remove_columns("labels"), processing_class=tokenizer)
    text = str(model_card(trainer, name="reconstructor"))
    assert "the **reconstructor** of a model trained with **cycle training**" in text and 'subfolder="reconstructor"' in text
    assert "@inproceedings{wang2018learning," in text and "@inproceedings{lample2018unsupervised," in text


def _adversarial(make_model, tokenizer, data, out, **kwargs):
    # the classifier discriminator: these tests check its folder's files (a Seq2SeqDiscriminator saves a generator copy)
    args = AdversarialConfig(str(out), mle_weight="linear:1,0,2", discriminator_type="classifier", **{**QUIET, "max_steps": 2, **kwargs})
    return AdversarialTrainer(make_model("marian", warm=False), args=args, train_dataset=data, processing_class=tokenizer)


def test_push_to_hub_generator_discriminator_and_checkpoints(make_model, tokenizer, data, tmp_path, hub):
    trainer = _adversarial(make_model, tokenizer, data, tmp_path / "run", push_to_hub=True, hub_model_id="me/tiny-gan",
                           hub_private_repo=True, hub_strategy="checkpoint", save_strategy="steps", save_steps=1, max_steps=1)
    assert hub.created == [{"repo": "me/tiny-gan", "visibility": "private"}]  # created by the Trainer's init, as in transformers
    assert hub.tokens == {"Bearer hf_dummy_token_for_tests"}
    trainer.train()  # the checkpoint at step 1 is pushed in the background; train() waits for it
    periodic = [c for c in hub.commits if c["summary"].startswith("Training in progress, step 1")]
    assert len(periodic) == 2  # the output folder, then the checkpoint as last-checkpoint/
    files = hub.files["me/tiny-gan"]
    for path in ("model.safetensors", "config.json", "tokenizer.json", "README.md", "discriminator/model.safetensors",
                 "discriminator/README.md", "last-checkpoint/hf_seqgan_training_state.pt", "last-checkpoint/optimizer.pt",
                 "last-checkpoint/discriminator/model.safetensors"):
        assert path in files, f"{path} was not pushed; got {sorted(files)}"
    assert not any(p.startswith("discriminator/") and "optimizer" in p for p in files)

    trainer.save_model()  # push_to_hub=True: a save by the user pushes too, as in transformers
    assert hub.commits[-1]["summary"] == "Model save" and "discriminator/model.safetensors" in hub.commits[-1]["paths"]

    hub.files["me/tiny-gan"].clear()
    trainer.push_to_hub(license="apache-2.0")
    final = hub.commits[-1]
    assert final["summary"] == "End of training"
    pushed = set(hub.files["me/tiny-gan"])
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
            "discriminator/model.safetensors", "discriminator/config.json", "discriminator/hf_seqgan_discriminator.json",
            "discriminator/tokenizer.json", "discriminator/README.md"} <= pushed
    assert not any(p.startswith("checkpoint-") or p.startswith("last-checkpoint/") for p in pushed)
    meta = _metadata(hub.files["me/tiny-gan"]["README.md"].decode())
    assert meta["license"] == "apache-2.0" and "gan" in meta["tags"]
    d_meta = _metadata(hub.files["me/tiny-gan"]["discriminator/README.md"].decode())
    assert d_meta["pipeline_tag"] == "text-classification" and "discriminator" in d_meta["tags"]
    assert "the `discriminator/` folder of this repo" in hub.files["me/tiny-gan"]["README.md"].decode()


def test_push_discriminator_to_its_own_repo(make_model, tokenizer, data, tmp_path, hub):
    trainer = _adversarial(make_model, tokenizer, data, tmp_path / "run", hub_model_id="me/tiny-gen", save_strategy="no", hub_token="hf_args_token")
    with pytest.raises(ValueError, match="reconstructor"):
        trainer.push_to_hub(auxiliary_hub_model_ids={"reconstructor": "me/r"})
    future = trainer.push_to_hub(blocking=False, auxiliary_hub_model_ids={"discriminator": "me/tiny-gen-discriminator"})
    trainer._finish_current_push()  # both uploads run in the background and are awaited together
    assert future.done() and trainer.push_in_progress.is_done()
    assert [c["repo"] for c in hub.created] == ["me/tiny-gen", "me/tiny-gen-discriminator"]
    assert hub.tokens == {"Bearer hf_args_token"}  # hub_token wins over HF_TOKEN, for every request
    generator, discriminator = hub.files["me/tiny-gen"], hub.files["me/tiny-gen-discriminator"]
    assert "model.safetensors" in generator and not any(p.startswith("discriminator/") for p in generator)
    assert {"model.safetensors", "config.json", "tokenizer.json", "hf_seqgan_discriminator.json", "README.md"} <= set(discriminator)
    assert "[me/tiny-gen-discriminator](https://huggingface.co/me/tiny-gen-discriminator)" in generator["README.md"].decode()
    d_card = discriminator["README.md"].decode()
    assert _metadata(d_card)["library_name"] == "transformers" and 'snapshot_download("me/tiny-gen-discriminator")' in d_card

    # the periodic push of hub_strategy="all_checkpoints" honours the discriminator's own repo too
    trainer.args.hub_strategy, trainer.args.save_strategy, trainer.state.global_step = "all_checkpoints", "steps", 3
    checkpoint = str(tmp_path / "run" / "checkpoint-3")
    trainer.save_model(checkpoint, _internal_call=True)
    trainer.create_optimizer_and_scheduler(num_training_steps=3)
    trainer._save_optimizer_and_scheduler(checkpoint)  # with the auxiliary models' state, as a checkpoint save writes it
    generator.clear()
    discriminator.clear()
    trainer._push_from_checkpoint(checkpoint)
    trainer._finish_current_push()
    assert {c["summary"] for c in hub.commits[-3:]} == {"Training in progress, step 3", "Training in progress, step 3, checkpoint"}
    assert "model.safetensors" in generator and not any(p.startswith("discriminator/") for p in generator)
    assert {"checkpoint-3/hf_seqgan_training_state.pt", "checkpoint-3/discriminator/model.safetensors"} <= set(generator)
    assert {"model.safetensors", "README.md"} <= set(discriminator)


def test_push_fails_clearly_offline_or_without_token(make_model, tokenizer, data, tmp_path, monkeypatch):
    # conftest runs the suite with HF_HUB_OFFLINE=1
    trainer = _adversarial(make_model, tokenizer, data, tmp_path / "a", save_strategy="no")
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE"):
        trainer.push_to_hub()
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE"):
        _adversarial(make_model, tokenizer, data, tmp_path / "b", push_to_hub=True, save_strategy="no")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HubPushError, match="no Hugging Face token"):
        trainer.push_to_hub()
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(HubPushError, match="unreachable"):
        trainer.push_to_hub()


def test_push_never_hangs_on_a_silent_endpoint(make_model, tokenizer, data, tmp_path, monkeypatch):
    """A Hub address that takes no connection (packets dropped) fails after CONNECT_TIMEOUT, at the probe before the push."""
    from huggingface_hub import constants

    import hf_seqgan.hub as hub_module

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    port = silent.getsockname()[1]
    backlog = []
    for _ in range(4):  # fill the accept queue: Linux then drops further SYNs, as a dead network would
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        backlog.append(client)
    try:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
            pytest.skip("this system's TCP stack accepts past a full backlog: no silent endpoint to test against")
        except TimeoutError:
            pass
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("HF_TOKEN", "hf_dummy")
        monkeypatch.setattr(hub_module, "CONNECT_TIMEOUT", 0.5)
        trainer = _adversarial(make_model, tokenizer, data, tmp_path, save_strategy="no")
        with pytest.raises(HubPushError, match="unreachable.*TimeoutError"):
            trainer.push_to_hub()
    finally:
        for sock in backlog + [silent]:
            sock.close()


@pytest.mark.parametrize("cause", ["offline", "endpoint gone"])
def test_a_failed_push_saves_first_and_says_where(make_model, tokenizer, data, tmp_path, hub, monkeypatch, cause):
    """The repo was created when the trainer was built; then the Hub goes away. The push (and a
    save, which pushes with push_to_hub=True) saves everything first and names the folder."""
    import shutil

    from huggingface_hub import constants

    out = tmp_path / "run"
    trainer = _adversarial(make_model, tokenizer, data, out, push_to_hub=True, hub_model_id="me/gone", save_strategy="no")
    assert [c["repo"] for c in hub.created] == ["me/gone"]
    if cause == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for call in (trainer.push_to_hub, trainer.save_model):
        shutil.rmtree(out, ignore_errors=True)
        with pytest.raises(HubPushError, match="HF_HUB_OFFLINE" if cause == "offline" else "unreachable") as caught:
            call()
        for path in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "training_args.bin", "README.md",
                     "discriminator/model.safetensors", "discriminator/config.json", "discriminator/README.md"):
            assert (out / path).is_file(), f"{path} is missing after the failed {call.__name__}"
        assert f"the model is saved, complete, in {out.resolve()}" in str(caught.value)
    assert not hub.commits


def _finishes_within(seconds: float, call):
    """Run ``call()`` in a thread: (the exception it raised, seconds it took); fail if it runs past ``seconds``."""
    outcome = {}

    def target():
        start = time.perf_counter()
        try:
            call()
        except Exception as err:
            outcome["error"] = err
        outcome["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting for the Hub after {seconds} s: a request without a timeout"
    return outcome.get("error"), outcome["seconds"]


@pytest.fixture
def mute_endpoint(monkeypatch):
    """A Hub address that accepts TCP connections (the kernel completes them into the backlog) and never answers."""
    from huggingface_hub import constants

    import hf_seqgan.hub as hub_module

    server = socket.create_server(("127.0.0.1", 0), backlog=32)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    monkeypatch.setattr(hub_module, "REQUEST_TIMEOUT", 0.5)
    yield server
    server.close()  # resets the queued connections: a request still waiting (the test failed) ends too


def test_building_a_pushing_trainer_never_hangs(make_model, tokenizer, data, tmp_path, mute_endpoint):
    model = make_model("marian", warm=False)
    args = AdversarialConfig(str(tmp_path), push_to_hub=True, hub_model_id="me/mute", save_strategy="no", **QUIET)
    error, seconds = _finishes_within(8, lambda: AdversarialTrainer(model, args=args, train_dataset=data, processing_class=tokenizer))
    print(f"create_repo on a mute endpoint gave up after {seconds:.2f} s")
    assert isinstance(error, HubPushError) and "does not answer (ReadTimeout" in str(error) and "push_to_hub=False" in str(error)
    assert seconds < 5


def test_push_never_hangs_on_a_hub_that_stops_answering(make_model, tokenizer, data, tmp_path, hub, monkeypatch):
    """The repo is created, then the YAML validation of the card (the commit's first request) is never answered."""
    import hf_seqgan.hub as hub_module

    monkeypatch.setattr(hub_module, "REQUEST_TIMEOUT", 0.5)
    hub.stall.add("/api/validate-yaml")
    trainer = _adversarial(make_model, tokenizer, data, tmp_path / "run", hub_model_id="me/stalled", save_strategy="no")
    error, seconds = _finishes_within(8, trainer.push_to_hub)
    print(f"the push on a Hub that stops answering gave up after {seconds:.2f} s")
    assert isinstance(error, HubPushError) and "does not answer (ReadTimeout" in str(error), error
    assert f"saved, complete, in {(tmp_path / 'run').resolve()}" in str(error) and (tmp_path / "run" / "model.safetensors").is_file()
    assert hub.created and not hub.commits and seconds < 5


def test_pushed_files_hold_no_token_and_no_local_path(make_model, tokenizer, data, tmp_path, hub):
    """hub_token (pickled in training_args.bin) and the folder of a local base model reach no
    uploaded byte: periodic pushes, the last-checkpoint/ folder and the final push."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    base_dir = tmp_path / "base"
    make_model("marian", warm=False).save_pretrained(base_dir)
    base = AutoModelForSeq2SeqLM.from_pretrained(base_dir)
    assert base.config._name_or_path == str(base_dir)
    secret = "hf_secret_token_never_pushed_0123456789"
    args = AdversarialConfig(str(tmp_path / "run"), mle_weight="linear:1,0,2", push_to_hub=True, hub_model_id="me/local-base",
                             hub_token=secret, hub_strategy="checkpoint", save_strategy="steps", save_steps=1, **{**QUIET, "max_steps": 1})
    trainer = AdversarialTrainer(base, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    trainer.push_to_hub()
    paths = {path for _, path, _ in hub.uploads}
    assert {"training_args.bin", "last-checkpoint/training_args.bin", "README.md", "discriminator/README.md"} <= paths
    assert {c["summary"] for c in hub.commits} >= {"Training in progress, step 1", "Training in progress, step 1, checkpoint", "End of training"}
    for needle in (secret, str(base_dir), str(base_dir.resolve())):
        leaks = sorted({path for _, path, content in hub.uploads if needle.encode() in content})
        assert not leaks, f"{needle} was pushed in {leaks}"
    card = hub.files["me/local-base"]["README.md"].decode()
    assert "fine-tuned from a local checkpoint" in card and "base_model" not in _metadata(card)
    pushed = torch.load(io.BytesIO(hub.files["me/local-base"]["training_args.bin"]), weights_only=False)
    assert pushed.hub_token is None and pushed.hub_model_id == "me/local-base" and pushed.max_steps == 1
    assert hub.tokens == {f"Bearer {secret}"}  # the token still authenticates every request
