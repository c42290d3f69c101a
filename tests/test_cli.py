"""The hf-seqgan command: list, config, run, plot; user errors are one clear line, never a traceback."""

import dataclasses
import json
import runpy
import subprocess
import sys
import types

import pytest

from hf_seqgan import cli
from hf_seqgan.trainers.adversarial import AdversarialConfig
from tests.conftest import ROOT


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_trainers_recipes_and_metrics(capsys):
    code, out, err = _run(capsys, "list")
    assert code == 0 and err == ""
    for name in ("scheduled_sampling", "professor_forcing", "adversarial", "cycle", "grpo", "mle"):
        assert f"\n  {name} " in out
    assert "Scheduled sampling (Bengio et al. 2015)" in out and "SeqGAN-style training" in out
    recipes = {p.stem[len("run_"):] for p in (ROOT / "examples").glob("run_*.py")}
    assert {"summarization", "translation", "style_transfer", "story_generation", "pretraining"} <= recipes
    for name in recipes:  # every example script is a recipe of the package, listed
        assert f"\n  {name} " in out
    assert "by denoising (Lewis et al. 2020" in out  # the summary is not cut at "et al."
    assert "Summarization with any trainer of hf_seqgan" in out
    assert "distinct_n, rouge, sacrebleu, self_bleu" in out


def test_config_lists_the_methods_own_fields_with_their_help(capsys):
    code, out, _ = _run(capsys, "config", "adversarial")
    assert code == 0
    own = [f for f in dataclasses.fields(AdversarialConfig) if f.name in {"generator_update", "baseline", "tau", "rollouts", "discriminator_learning_rate"}]
    assert len(own) == 5
    for f in own:
        assert f"--{f.name} (" in out
        assert " ".join(f.metadata["help"].split())[:60] in out
    assert "--learning_rate" not in out and "--per_device_train_batch_size" not in out  # the Trainer's own: with --help
    assert "hf-seqgan config adversarial --help" in out
    assert "--tau (schedule, default '1.0')" in out and out.count("'inverse_sigmoid:k=100'") == 1  # the forms, said once


def test_config_help_has_every_field(capsys):
    code, out, _ = _run(capsys, "config", "scheduled_sampling", "--help")
    assert code == 0
    assert out.startswith("usage: hf-seqgan config scheduled_sampling")
    for option in ("--gold_probability", "--mode", "--mixing_temperature", "--learning_rate", "--output_dir", "--predict_with_generate"):
        assert option in out
    assert "Probability of feeding the gold token" in out


def test_config_errors_are_clear(capsys, monkeypatch):
    code, _, err = _run(capsys, "config", "gan")
    assert code == 2 and err.startswith("hf-seqgan: error: unknown trainer 'gan'; the trainers are: mle, scheduled_sampling")
    from hf_seqgan import registry

    monkeypatch.setitem(registry.RUNTIME, "later", registry.Entry("hf_seqgan.trainers.not_written_yet", "LaterTrainer", "LaterConfig", "coming"))
    code, _, err = _run(capsys, "config", "later")
    assert code == 2 and "Traceback" not in err
    assert "the trainer 'later' (hf_seqgan.trainers.not_written_yet.LaterConfig) cannot be imported in this installation (ModuleNotFoundError" in err


def test_run_recipe_help_and_errors(capsys, monkeypatch, tmp_path):
    argv = sys.argv[:]
    code, out, _ = _run(capsys, "run", "summarization", "--help")
    assert code == 0
    assert "--model_name_or_path" in out and "--trainer" in out and "--output_dir" in out
    assert sys.argv == argv

    code, _, err = _run(capsys, "run", "poetry", "--max_steps", "3")
    assert code == 2 and "unknown recipe 'poetry'; the recipes are: " in err and "summarization" in err

    # the recipes are package modules: `run` needs no examples/ folder (a wheel install), and a recipe's
    # exit status comes back
    echo = types.ModuleType("hf_seqgan.recipes.echo")
    echo.main = lambda args: (print("echo", args, sys.argv[0]), sys.exit(int(args[0])))
    monkeypatch.setitem(sys.modules, "hf_seqgan.recipes.echo", echo)
    monkeypatch.setattr(cli, "recipes", lambda: {"echo": tmp_path / "echo.py"})
    code, out, _ = _run(capsys, "run", "echo", "3", "--flag")
    assert code == 3 and "echo ['3', '--flag'] hf-seqgan run echo" in out
    assert sys.argv == argv


def test_the_examples_call_the_package_recipes():
    """`examples/run_<name>.py` are thin: each calls `hf_seqgan.recipes.<name>.main`, and the library never
    reads examples/."""
    import hf_seqgan.cli as cli

    for script in (ROOT / "examples").glob("run_*.py"):
        name = script.stem[len("run_"):]
        text = script.read_text(encoding="utf-8")
        assert f"from hf_seqgan.recipes.{name} import main" in text, script
        assert (cli.RECIPES_DIR / f"{name}.py").is_file()
    assert "examples" not in str(cli.RECIPES_DIR)


def test_plot_command(capsys, tmp_path):
    history = [{"step": s, "loss": 2.0 / s, "d_acc_real": 0.5 + 0.1 * s, "d_acc_fake": 0.4} for s in (1, 2, 3)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": history}))
    code, out, _ = _run(capsys, "plot", str(tmp_path))
    assert code == 0 and out.startswith(str(tmp_path / "training_curves.png")) and "2 panels (discriminator accuracy, generator loss / NLL)" in out
    code, _, err = _run(capsys, "plot", str(tmp_path / "missing"))
    assert code == 2 and "is not a folder" in err


def test_no_command_prints_help_and_module_entry_point(capsys, monkeypatch):
    code, out, _ = _run(capsys)
    assert code == 0 and out.startswith("usage: hf-seqgan") and "{list,config,run,plot}" in out
    monkeypatch.setattr(sys, "argv", ["hf_seqgan", "config", "unknown"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("hf_seqgan", run_name="__main__")
    assert exit_.value.code == 2 and "unknown trainer 'unknown'" in capsys.readouterr().err


def test_list_and_help_import_no_trainer(tmp_path):
    """The command itself stays light: with the package's own imports set aside, `list` and the help
    load neither torch nor transformers nor a trainer module (they come with `config` and `run`)."""
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('hf_seqgan'); pkg.__path__ = [{str(ROOT / 'hf_seqgan')!r}]; pkg.__file__ = {str(ROOT / 'hf_seqgan' / '__init__.py')!r}\n"
        "sys.modules['hf_seqgan'] = pkg\n"
        "from hf_seqgan import cli\n"
        "assert cli.main([]) == 0 and cli.main(['list']) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers') or m.startswith('hf_seqgan.trainers'))\n"
        "print('HEAVY', heavy[:5])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout and "scheduled_sampling" in proc.stdout


def test_trainers_are_found_when_the_package_is_not_on_sys_path(tmp_path):
    """An editable install imports the package through a finder, not a `sys.path` entry: `list` must
    still see the trainer modules (it looks below the imported package)."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r}); import hf_seqgan; sys.path.remove({str(ROOT)!r})\n"
        "from hf_seqgan import cli\n"
        "names = set(cli.trainers())\n"
        "assert {'scheduled_sampling', 'professor_forcing', 'adversarial', 'cycle', 'grpo'} <= names, names\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
