"""Schedules: one abstraction for every knob that moves with training or decoding.

A :class:`Schedule` maps a step (an optimizer step, a generated position, a sentence index) to a
float through :meth:`Schedule.value`, or a whole tensor of steps at once through
:meth:`Schedule.values`. Every schedule is written as one string, so that a config field holding
it is set from the command line by `HfArgumentParser` and stored in the JSON of a
`TrainingArguments` (and therefore in every checkpoint):

| string                                         | value at step ``i``                          |
|------------------------------------------------|----------------------------------------------|
| ``0.5`` or ``constant:0.5``                    | ``0.5``                                      |
| ``linear:start=1,end=0,steps=1000``            | ``start + (end - start) * min(i, steps) / steps`` |
| ``exponential:start=1,rate=0.999,end=0``       | ``end + (start - end) * rate ** i``          |
| ``inverse_sigmoid:k=100``                      | ``k / (k + exp(i / k))`` (Bengio et al. 2015) |
| ``cosine:start=1,end=0,steps=1000``            | ``end + (start - end) * (1 + cos(pi * min(i, steps) / steps)) / 2`` |
| ``piecewise:0=0,500=0,1000=1``                 | linear between the ``step=value`` points, constant outside |

Arguments may also be given by position (``linear:1,0,1000``). Parsing is strict: an unknown
name, a missing or unknown argument, or a value that is not a finite number raises a
`ValueError` listing the accepted forms.

Examples:

```python
>>> from hf_seqgan.schedules import Schedule
>>> s = Schedule.from_string("inverse_sigmoid:k=10")
>>> round(s.value(0), 4), round(s.value(50), 4)
(0.9091, 0.0631)
>>> str(Schedule.from_string("linear:1,0,100"))
'linear:start=1,end=0,steps=100'

```
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Union

import torch

__all__ = [
    "Schedule",
    "ConstantSchedule",
    "LinearSchedule",
    "ExponentialSchedule",
    "InverseSigmoidSchedule",
    "CosineSchedule",
    "PiecewiseSchedule",
    "as_schedule",
    "schedule_field",
    "SCHEDULE_FORMS",
]

SCHEDULE_FORMS = (
    "'0.5' or 'constant:0.5'; 'linear:start=1,end=0,steps=1000'; "
    "'exponential:start=1,rate=0.999,end=0'; 'inverse_sigmoid:k=100'; "
    "'cosine:start=1,end=0,steps=1000'; 'piecewise:0=0,500=0,1000=1' "
    "(arguments may also be positional, e.g. 'linear:1,0,1000')"
)


def _fmt(x: float) -> str:
    """Shortest text that parses back to the same float (``1.0`` -> ``'1'``)."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _number(text: str, what: str, spec: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"Schedule {spec!r}: {what}={text!r} is not a number. Accepted forms: {SCHEDULE_FORMS}") from None
    if not math.isfinite(x):
        raise ValueError(f"Schedule {spec!r}: {what}={text!r} is not finite. Accepted forms: {SCHEDULE_FORMS}")
    return x


class Schedule:
    """A float that moves with a step. Subclasses are frozen dataclasses of their parameters.

    Subclasses implement :meth:`_values` on a float64 tensor of steps; :meth:`value` and
    :meth:`values` are defined on top of it, so the scalar and the vectorized forms never differ.
    """

    name: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type["Schedule"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            Schedule._registry[cls.name] = cls

    # -- evaluation ---------------------------------------------------------------------------
    def _values(self, steps: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def values(self, steps: torch.Tensor) -> torch.Tensor:
        """Vectorized values at a tensor of steps (any shape), as float32 on the steps' device."""
        return self._values(steps.to(torch.float64)).to(torch.float32)

    def value(self, step: Union[int, float]) -> float:
        """The value at one step, computed in float64."""
        return float(self._values(torch.tensor(float(step), dtype=torch.float64)))

    __call__ = value

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value the schedule takes over steps >= 0."""
        raise NotImplementedError

    # -- text form ----------------------------------------------------------------------------
    def to_string(self) -> str:
        args = ",".join(f"{f.name}={_fmt(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{self.name}:{args}"

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def from_string(cls, spec: Union[str, float, int, "Schedule"]) -> "Schedule":
        """Parse one of the forms in the module docstring. A bare number is a constant."""
        if isinstance(spec, Schedule):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return ConstantSchedule(_number(str(spec), "value", str(spec)))
        if not isinstance(spec, str):
            raise ValueError(f"A schedule must be a string or a number, got {type(spec).__name__}. Accepted forms: {SCHEDULE_FORMS}")
        text = spec.strip().replace(" ", "")
        if not text:
            raise ValueError(f"Empty schedule string. Accepted forms: {SCHEDULE_FORMS}")
        name, sep, rest = text.partition(":")
        if not sep:
            return ConstantSchedule(_number(name, "value", spec))
        name = name.lower().replace("-", "_")
        if name not in Schedule._registry:
            raise ValueError(
                f"Unknown schedule {name!r} in {spec!r}; known: {sorted(Schedule._registry)}. Accepted forms: {SCHEDULE_FORMS}"
            )
        parts = [p for p in rest.split(",") if p] if rest else []
        return Schedule._registry[name]._from_parts(parts, spec)

    @classmethod
    def _from_parts(cls, parts: list[str], spec: str) -> "Schedule":
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs: dict[str, float] = {}
        for i, part in enumerate(parts):
            key, eq, val = part.partition("=")
            if not eq:
                if i >= len(names) or kwargs.keys() - set(names[:i]):
                    raise ValueError(f"Schedule {spec!r}: too many or misplaced positional arguments; {cls.name} takes {names}. Accepted forms: {SCHEDULE_FORMS}")
                key, val = names[i], part
            if key not in names:
                raise ValueError(f"Schedule {spec!r}: unknown argument {key!r}; {cls.name} takes {names}. Accepted forms: {SCHEDULE_FORMS}")
            if key in kwargs:
                raise ValueError(f"Schedule {spec!r}: argument {key!r} given twice. Accepted forms: {SCHEDULE_FORMS}")
            kwargs[key] = _number(val, key, spec)
        defaults = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        missing = [n for n in names if n not in kwargs and n not in defaults]
        if missing:
            raise ValueError(f"Schedule {spec!r}: missing argument(s) {missing}; {cls.name} takes {names}. Accepted forms: {SCHEDULE_FORMS}")
        try:
            return cls(**kwargs)
        except ValueError as err:
            raise ValueError(f"Schedule {spec!r}: {err}. Accepted forms: {SCHEDULE_FORMS}") from None


@dataclasses.dataclass(frozen=True)
class ConstantSchedule(Schedule):
    """The same value at every step."""

    value_: float

    name: ClassVar[str] = "constant"

    def _values(self, steps):
        return torch.full_like(steps, self.value_)

    def bounds(self):
        return (self.value_, self.value_)

    def to_string(self) -> str:
        return f"constant:{_fmt(self.value_)}"

    @classmethod
    def _from_parts(cls, parts, spec):
        if len(parts) != 1:
            raise ValueError(f"Schedule {spec!r}: constant takes one value. Accepted forms: {SCHEDULE_FORMS}")
        key, eq, val = parts[0].partition("=")
        if eq and key != "value":
            raise ValueError(f"Schedule {spec!r}: unknown argument {key!r}; constant takes ['value']. Accepted forms: {SCHEDULE_FORMS}")
        return cls(_number(val if eq else key, "value", spec))


def _check_steps(steps: float) -> None:
    if steps <= 0:
        raise ValueError(f"steps must be > 0, got {_fmt(steps)}")


@dataclasses.dataclass(frozen=True)
class LinearSchedule(Schedule):
    """From ``start`` to ``end`` in a straight line over ``steps``, then ``end``."""

    start: float
    end: float
    steps: float

    name: ClassVar[str] = "linear"

    def __post_init__(self):
        _check_steps(self.steps)

    def _values(self, steps):
        frac = steps.clamp(min=0.0, max=self.steps) / self.steps
        return self.start + (self.end - self.start) * frac

    def bounds(self):
        return (min(self.start, self.end), max(self.start, self.end))


@dataclasses.dataclass(frozen=True)
class ExponentialSchedule(Schedule):
    """``end + (start - end) * rate ** step``; Bengio et al.'s ``k ** i`` is ``start=1, rate=k``."""

    start: float = 1.0
    rate: float = 0.999
    end: float = 0.0

    name: ClassVar[str] = "exponential"

    def __post_init__(self):
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {_fmt(self.rate)}")

    def _values(self, steps):
        return self.end + (self.start - self.end) * torch.pow(torch.full_like(steps, self.rate), steps.clamp(min=0.0))

    def bounds(self):
        return (min(self.start, self.end), max(self.start, self.end))


@dataclasses.dataclass(frozen=True)
class InverseSigmoidSchedule(Schedule):
    """``k / (k + exp(step / k))`` (Bengio et al. 2015, https://arxiv.org/abs/1506.03099), k >= 1."""

    k: float

    name: ClassVar[str] = "inverse_sigmoid"

    def __post_init__(self):
        if self.k < 1.0:
            raise ValueError(f"k must be >= 1, got {_fmt(self.k)}")

    def _values(self, steps):
        # k / (k + exp(i/k)) = sigmoid(log k - i/k), stable for large i
        return torch.sigmoid(math.log(self.k) - steps.clamp(min=0.0) / self.k)

    def bounds(self):
        return (0.0, self.k / (self.k + 1.0))


@dataclasses.dataclass(frozen=True)
class CosineSchedule(Schedule):
    """Half a cosine from ``start`` to ``end`` over ``steps``, then ``end``."""

    start: float
    end: float
    steps: float

    name: ClassVar[str] = "cosine"

    def __post_init__(self):
        _check_steps(self.steps)

    def _values(self, steps):
        frac = steps.clamp(min=0.0, max=self.steps) / self.steps
        return self.end + (self.start - self.end) * 0.5 * (1.0 + torch.cos(math.pi * frac))

    def bounds(self):
        return (min(self.start, self.end), max(self.start, self.end))


@dataclasses.dataclass(frozen=True)
class PiecewiseSchedule(Schedule):
    """Linear interpolation between ``(step, value)`` points, constant before the first and after
    the last. A jump is two points one step apart (``piecewise:0=0,999=0,1000=1``)."""

    points: tuple[tuple[float, float], ...]

    name: ClassVar[str] = "piecewise"

    def __post_init__(self):
        if not self.points:
            raise ValueError("piecewise needs at least one step=value point")
        xs = [p[0] for p in self.points]
        if any(b <= a for a, b in zip(xs, xs[1:])):
            raise ValueError(f"piecewise steps must be strictly increasing, got {[_fmt(x) for x in xs]}")

    def _values(self, steps):
        xs = torch.tensor([p[0] for p in self.points], dtype=steps.dtype, device=steps.device)
        ys = torch.tensor([p[1] for p in self.points], dtype=steps.dtype, device=steps.device)
        if len(self.points) == 1:
            return torch.full_like(steps, float(ys[0]))
        flat = steps.reshape(-1)
        idx = torch.searchsorted(xs, flat.contiguous(), right=True).clamp(1, len(xs) - 1)
        x0, x1, y0, y1 = xs[idx - 1], xs[idx], ys[idx - 1], ys[idx]
        frac = ((flat - x0) / (x1 - x0)).clamp(0.0, 1.0)
        return (y0 + (y1 - y0) * frac).reshape(steps.shape)

    def bounds(self):
        ys = [p[1] for p in self.points]
        return (min(ys), max(ys))

    def to_string(self) -> str:
        return "piecewise:" + ",".join(f"{_fmt(x)}={_fmt(y)}" for x, y in self.points)

    @classmethod
    def _from_parts(cls, parts, spec):
        points = []
        for part in parts:
            key, eq, val = part.partition("=")
            if not eq:
                raise ValueError(f"Schedule {spec!r}: piecewise points are written step=value, got {part!r}. Accepted forms: {SCHEDULE_FORMS}")
            points.append((_number(key, "step", spec), _number(val, "value", spec)))
        try:
            return cls(tuple(points))
        except ValueError as err:
            raise ValueError(f"Schedule {spec!r}: {err}. Accepted forms: {SCHEDULE_FORMS}") from None


def as_schedule(spec: Union[str, float, int, Schedule], *, name: str = "schedule", low: float | None = None, high: float | None = None) -> Schedule:
    """Parse ``spec`` and check that its values stay inside ``[low, high]`` (either may be None).

    Config classes store schedules as strings (see :func:`schedule_field`) and call this in
    ``__post_init__`` to validate and in the trainer to get the object.
    """
    try:
        schedule = Schedule.from_string(spec)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    lo, hi = schedule.bounds()
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise ValueError(
            f"{name}={str(schedule)!r} takes values in [{_fmt(lo)}, {_fmt(hi)}], outside the allowed "
            f"range [{'-inf' if low is None else _fmt(low)}, {'inf' if high is None else _fmt(high)}]"
        )
    return schedule


def schedule_field(default: Union[str, float], help: str) -> Any:
    """A dataclass field for a config: stored as the schedule's string, so that `HfArgumentParser`
    reads it from one command-line word and `TrainingArguments.to_json_string()` writes it."""
    return dataclasses.field(default=str(default), metadata={"help": f"{help} A schedule string: {SCHEDULE_FORMS}."})
