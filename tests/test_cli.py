"""The hf-seqgan command: list, config, run, plot; user errors are one clear line, never a traceback."""

import dataclasses
import json
import runpy
import subprocess
import sys

import pytest

import hf_seqgan
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
    assert "summarization" in recipes
    for name in recipes:
        assert f"\n  {name} " in out
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

    # an install without the examples folder beside the package (a wheel)
    monkeypatch.setattr(hf_seqgan, "__file__", str(tmp_path / "site-packages" / "hf_seqgan" / "__init__.py"))
    code, _, err = _run(capsys, "run", "summarization")
    assert code == 2 and "has none beside it (a wheel install)" in err and "pip install -e ." in err and "HF_SEQGAN_EXAMPLES" in err
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "Recipes" in out and "(none: " in out
    (tmp_path / "site-packages" / "examples").mkdir(parents=True)  # another project's examples/ beside the package
    (tmp_path / "site-packages" / "examples" / "train.py").write_text("")
    code, _, err = _run(capsys, "run", "summarization")
    assert code == 2 and "(a wheel install)" in err

    # HF_SEQGAN_EXAMPLES points at another folder of recipes; the exit status comes back
    (tmp_path / "run_echo.py").write_text("import sys\nprint('echo', sys.argv[1:])\nsys.exit(int(sys.argv[1]))\n")
    monkeypatch.setenv("HF_SEQGAN_EXAMPLES", str(tmp_path))
    code, out, _ = _run(capsys, "run", "echo", "3", "--flag")
    assert code == 3 and "echo ['3', '--flag']" in out
    monkeypatch.setenv("HF_SEQGAN_EXAMPLES", str(tmp_path / "nowhere"))
    code, _, err = _run(capsys, "run", "echo")
    assert code == 2 and "HF_SEQGAN_EXAMPLES=" in err and "is not a folder" in err


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
