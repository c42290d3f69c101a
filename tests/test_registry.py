"""A new technique is one file: a trainer that describes itself is trained, listed, configured and
carded with no edit anywhere else; the package's imports only go down."""

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from datasets import Dataset

from hf_seqgan import cli, registry
from hf_seqgan.trainers import BaseConfig, BaseTrainer
from tests.conftest import ROOT

TOY = '''
import dataclasses

from hf_seqgan.cards import Method
from hf_seqgan.trainers import BaseConfig, BaseTrainer

__all__ = ["ToyConfig", "ToyTrainer"]


@dataclasses.dataclass
class ToyConfig(BaseConfig):
    """Teacher forcing with the loss scaled by ``toy_weight``."""

    toy_weight: float = dataclasses.field(default=0.5, metadata={"help": "Weight of the toy loss."})


class ToyTrainer(BaseTrainer):
    """Teacher forcing at a weight: the smallest technique."""

    cli_name = "toy"
    config_class = ToyConfig
    summary = "A toy technique: teacher forcing at a weight (Doe 2026)."
    supervised = True

    @classmethod
    def describe(cls, args):
        return Method("toy training", "toy", f"The cross-entropy times {args.toy_weight}.", ["doe2026toy"],
                      bibtex={"doe2026toy": "@misc{doe2026toy,\\n  title = {A Toy Technique},\\n  author = {Doe, Jane},\\n  year = {2026}\\n}"})

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs.loss * (self.args.toy_weight if model.training else 1.0)
        return (loss, outputs) if return_outputs else loss
'''


# the toy trainer, defined in this test module (its classes live here, so its config pickles into checkpoints);
# it registered itself when its class was created: the registration is taken back here and made only
# for the test that uses it, so that no other test sees a "toy" trainer
exec(compile(TOY.replace("__all__", "_toy_exports"), __file__, "exec"), globals())
_TOY_ENTRY = registry.RUNTIME.pop("toy")


def test_a_trainer_defined_anywhere_trains_lists_configures_and_cards_itself(make_model, tokenizer, corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(registry.RUNTIME, "toy", _TOY_ENTRY)
    assert issubclass(ToyConfig, BaseConfig) and issubclass(ToyTrainer, BaseTrainer)
    enc = tokenizer([r["article"] for r in corpus[:16]], truncation=True, max_length=24)
    labels = tokenizer([r["headline"] for r in corpus[:16]], truncation=True, max_length=8).input_ids
    data = Dataset.from_dict({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": labels})
    args = ToyConfig(str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to="none", use_cpu=True, save_strategy="no")
    from transformers import DataCollatorForSeq2Seq

    model = make_model("bart")
    before = [p.detach().clone() for p in model.parameters()]
    trainer = ToyTrainer(model, args, DataCollatorForSeq2Seq(tokenizer), data, processing_class=tokenizer)
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    trainer.save_model()
    card = (tmp_path / "README.md").read_text()
    assert "toy training" in card and "A Toy Technique" in card and "@misc{doe2026toy" in card

    capsys.readouterr()
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  toy" in out and "A toy technique: teacher forcing at a weight" in out
    assert cli.main(["config", "toy"]) == 0
    out = capsys.readouterr().out
    assert "--toy_weight (float, default 0.5)" in out and "Weight of the toy loss." in out
    from hf_seqgan import recipes

    assert recipes.trainer_classes("toy")[1] is ToyTrainer


def test_a_trainer_added_to_the_package_is_one_file(tmp_path):
    """A copy of the package with one new file in hf_seqgan/trainers/: `from hf_seqgan import
    ToyTrainer`, `hf-seqgan list` and `config toy` find it, with no other edit."""
    shutil.copytree(ROOT / "hf_seqgan", tmp_path / "hf_seqgan", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "hf_seqgan" / "trainers" / "toy.py").write_text(TOY)
    shutil.copytree(ROOT / "model_cards", tmp_path / "model_cards")
    code = textwrap.dedent("""
        from hf_seqgan import cli
        assert cli.main(["list"]) == 0
        assert cli.main(["config", "toy"]) == 0
        from hf_seqgan import ToyTrainer, ToyConfig
        import hf_seqgan.trainers as t
        print("EXPORTED", "ToyTrainer" in t.__all__, ToyTrainer.cli_name)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "  toy  " in proc.stdout and "--toy_weight (float, default 0.5)" in proc.stdout and "EXPORTED True toy" in proc.stdout


# ---------------------------------------------------------------------- the import graph goes down
#: lower number = lower layer; a module may import only modules of its layer or below (trainers ->
#: scoring / rewards -> rollout -> processors -> sampling / schedules; nothing low imports a trainer or an example)
LAYERS = {
    "sampling": 0, "schedules": 0, "synthetic": 0, "registry": 0, "metrics": 0, "noise": 0, "tiny": 0, "plotting": 0, "directions": 0,
    "collapse": 1, "pretraining": 1,
    "discriminators": 1, "hidden_discriminator": 1,
    "logits_process": 2, "sequences": 2, "continuation": 2,
    "rollout": 3,
    "scoring": 4, "rewards": 4, "evaluation": 4, "reranking": 4, "hub": 4, "cards": 4,
    "oracle": 5, "seq2seq_discriminator": 5, "discriminator_training": 5, "residual_ebm": 6,
    "trainers": 7,
    "recipes": 8, "cli": 8, "__main__": 9, "__init__": 10,
}


def _package_imports(path: Path, package_parts: list[str]) -> set[str]:
    """The hf_seqgan modules (first component below the package) a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
                if len(parts) == 1 and not node.module:  # from . import x
                    found.update(alias.name for alias in node.names)
                    continue
            elif node.module and node.module.split(".")[0] == "hf_seqgan":
                parts = node.module.split(".")
            else:
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("hf_seqgan.") )
    return found


def test_the_import_graph_goes_down():
    package = ROOT / "hf_seqgan"
    upward = []
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).with_suffix("").parts
        if rel[0] == "metrics" and len(rel) > 2:
            continue  # the evaluate scripts of the metrics import nothing of the package
        layer = LAYERS.get(rel[0])
        assert layer is not None, f"{path}: add the module to LAYERS"
        parts = ["hf_seqgan", *rel[:-1]] if rel[-1] == "__init__" else ["hf_seqgan", *rel[:-1]]
        for target in _package_imports(path, parts):
            if target == rel[0] or target not in LAYERS:
                continue
            if LAYERS[target] > layer:
                upward.append(f"{'/'.join(rel)} imports {target}")
        if rel[0] != "trainers":  # the trainers' private modules are theirs alone
            text = path.read_text(encoding="utf-8")
            private = [line.strip() for line in text.splitlines() if "trainers._" in line and "import" in line]
            upward += [f"{'/'.join(rel)}: {line}" for line in private]
        assert "examples" not in _package_imports(path, parts), f"{path} imports examples/"
    assert not upward, upward
