import dataclasses
import json
import math

import pytest
import torch
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from hf_seqgan.schedules import (
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    InverseSigmoidSchedule,
    LinearSchedule,
    PiecewiseSchedule,
    Schedule,
    as_schedule,
    schedule_field,
)

STEPS = [0, 1, 7, 50, 99, 100, 101, 1000, 12345]


def _piecewise(i):
    pts = [(0, 0.0), (100, 0.0), (200, 1.0), (1000, 0.5)]
    if i <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if i <= x1:
            return y0 + (y1 - y0) * (i - x0) / (x1 - x0)
    return pts[-1][1]


CASES = [
    ("0.25", lambda i: 0.25),
    ("constant:0.7", lambda i: 0.7),
    ("linear:start=1,end=0.1,steps=100", lambda i: 1 + (0.1 - 1) * min(i, 100) / 100),
    ("exponential:start=1,rate=0.99,end=0", lambda i: 0.99**i),
    ("exponential:start=1,rate=0.9,end=0.2", lambda i: 0.2 + 0.8 * 0.9**i),
    ("inverse_sigmoid:k=100", lambda i: 100 / (100 + math.exp(i / 100))),
    ("inverse_sigmoid:k=10", lambda i: 10 / (10 + math.exp(i / 10)) if i / 10 < 700 else 0.0),
    ("cosine:start=2,end=0.5,steps=100", lambda i: 0.5 + 1.5 * 0.5 * (1 + math.cos(math.pi * min(i, 100) / 100))),
    ("piecewise:0=0,100=0,200=1,1000=0.5", _piecewise),
]


@pytest.mark.parametrize("spec,formula", CASES, ids=[c[0] for c in CASES])
def test_values_match_formula(spec, formula):
    schedule = Schedule.from_string(spec)
    for step in STEPS:
        assert schedule.value(step) == pytest.approx(formula(step), rel=1e-12, abs=1e-12), step
        assert schedule(step) == schedule.value(step)
    tensor = schedule.values(torch.tensor(STEPS))
    assert tensor.shape == (len(STEPS),)
    assert torch.allclose(tensor.double(), torch.tensor([formula(s) for s in STEPS], dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("spec,_", CASES, ids=[c[0] for c in CASES])
def test_string_round_trip(spec, _):
    schedule = Schedule.from_string(spec)
    again = Schedule.from_string(str(schedule))
    assert again == schedule
    assert str(again) == str(schedule)


def test_positional_and_named_forms_agree():
    assert Schedule.from_string("linear:1,0,100") == LinearSchedule(1.0, 0.0, 100.0)
    assert Schedule.from_string("linear: start=1, end=0, steps=100") == LinearSchedule(1.0, 0.0, 100.0)
    assert Schedule.from_string("exponential:rate=0.5") == ExponentialSchedule(1.0, 0.5, 0.0)
    assert Schedule.from_string("Inverse-Sigmoid:k=5") == InverseSigmoidSchedule(5.0)
    assert Schedule.from_string(0.5) == ConstantSchedule(0.5)
    assert str(Schedule.from_string("linear:1,0,100")) == "linear:start=1,end=0,steps=100"
    assert isinstance(Schedule.from_string("cosine:1,0,10"), CosineSchedule)
    assert isinstance(Schedule.from_string("piecewise:0=1"), PiecewiseSchedule)


def test_bengio_exponential_and_inverse_sigmoid_bounds():
    assert Schedule.from_string("inverse_sigmoid:k=1").value(0) == pytest.approx(0.5)
    assert Schedule.from_string("inverse_sigmoid:k=100").bounds() == (0.0, pytest.approx(100 / 101))
    assert Schedule.from_string("exponential:1,0.5").value(3) == pytest.approx(0.125)
    # large steps stay finite
    assert Schedule.from_string("inverse_sigmoid:k=2").value(10**9) == 0.0


@pytest.mark.parametrize(
    "bad,fragment",
    [
        ("linaer:1,0,10", "Unknown schedule"),
        ("linear:1,0", "missing argument"),
        ("linear:1,0,0", "steps must be > 0"),
        ("linear:start=1,stop=0,steps=5", "unknown argument"),
        ("linear:1,0,10,4", "too many"),
        ("linear:start=a,end=0,steps=5", "not a number"),
        ("constant:nan", "not finite"),
        ("exponential:rate=1.5", "rate must be in"),
        ("inverse_sigmoid:k=0.5", "k must be >= 1"),
        ("piecewise:10=1,5=0", "strictly increasing"),
        ("piecewise:10", "step=value"),
        ("", "Empty schedule"),
        ("abc", "not a number"),
    ],
)
def test_bad_strings_raise_with_accepted_forms(bad, fragment):
    with pytest.raises(ValueError) as err:
        Schedule.from_string(bad)
    assert fragment in str(err.value)
    assert "Accepted forms" in str(err.value)


def test_as_schedule_checks_range():
    assert as_schedule("linear:1,0,10", low=0, high=1) == LinearSchedule(1.0, 0.0, 10.0)
    with pytest.raises(ValueError, match=r"outside the allowed range \[0, 1\]"):
        as_schedule("linear:1.5,0,10", name="p", low=0, high=1)
    with pytest.raises(ValueError, match="^p: "):
        as_schedule("nope:1", name="p")


@dataclasses.dataclass
class _Config(Seq2SeqTrainingArguments):
    teacher_forcing: str = schedule_field("inverse_sigmoid:k=100", "Probability of feeding the gold token.")
    tau: str = schedule_field("1.0", "Gumbel temperature.")

    def __post_init__(self):
        super().__post_init__()
        self.teacher_forcing = str(as_schedule(self.teacher_forcing, name="teacher_forcing", low=0, high=1))
        self.tau = str(as_schedule(self.tau, name="tau", low=1e-6))


def test_round_trip_through_training_arguments_json_and_cli(tmp_path):
    parser = HfArgumentParser(_Config)
    (cfg,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--teacher_forcing", "linear:1,0.25,500", "--tau", "exponential:2,0.99,0.1", "--report_to", "none"]
    )
    assert as_schedule(cfg.teacher_forcing) == LinearSchedule(1.0, 0.25, 500.0)
    assert "help" in _Config.__dataclass_fields__["tau"].metadata and "Accepted" not in _Config.__dataclass_fields__["tau"].metadata["help"]
    as_json = json.loads(cfg.to_json_string())
    assert as_json["teacher_forcing"] == "linear:start=1,end=0.25,steps=500"
    path = tmp_path / "args.json"
    path.write_text(json.dumps({k: v for k, v in as_json.items() if k in {"output_dir", "teacher_forcing", "tau", "report_to"}}))
    (again,) = parser.parse_json_file(str(path))
    assert as_schedule(again.tau) == as_schedule(cfg.tau)
    assert as_schedule(again.teacher_forcing).value(250) == pytest.approx(0.625)
    with pytest.raises(ValueError, match="teacher_forcing"):
        _Config(output_dir=str(tmp_path), teacher_forcing="linear:2,0,5")
    # a Schedule object is accepted and stored as its string
    obj = _Config(output_dir=str(tmp_path), teacher_forcing=InverseSigmoidSchedule(50.0))
    assert obj.teacher_forcing == "inverse_sigmoid:k=50"
