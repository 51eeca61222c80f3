"""What a simulated sensor measures: reading types, their ranges, and the value generators.

Values follow a bounded random walk per device and type (a real temperature drifts, it does not jump
between 20 and 34 every second); the course's uniform draw stays available with `--uniform`.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

# The api's rule for a type name (api/iot_api/readings.py TYPE_PATTERN): checked here too, so that a
# typo is a usage error at start-up instead of thousands of 422s.
TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class TypeSpec:
    name: str
    low: float
    high: float
    decimals: int = 2
    # Standard deviation of one random-walk step, as a fraction of the range: small enough to look like
    # a physical quantity drifting, large enough that a minute of data visibly moves.
    step: float = 0.02


KNOWN_TYPES: dict[str, TypeSpec] = {
    "temp": TypeSpec("temp", 20, 34),  # °C; the course's range (its script: 20 + RANDOM % 15)
    "pressure": TypeSpec("pressure", 980, 1040),  # hPa
    "humidity": TypeSpec("humidity", 20, 80),  # % relative humidity
    "co2": TypeSpec("co2", 400, 2000, decimals=0),  # ppm
}


def parse_types(text: str) -> list[TypeSpec]:
    """`temp,pressure` or custom ranges `name:min:max` (e.g. `light:0:1000`); ValueError says why."""
    specs: list[TypeSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ValueError(f"empty type name in {text!r} (use e.g. temp,pressure,humidity)")
        name, _, rng = part.partition(":")
        if not TYPE_RE.match(name):
            raise ValueError(f"type {name!r}: must start with a letter and use at most 32 letters, "
                             "digits and _ . -")
        if rng:
            bounds = rng.split(":")
            try:
                low, high = (float(b) for b in bounds)
            except ValueError:
                raise ValueError(f"type {part!r}: expected NAME:MIN:MAX with numbers, e.g. light:0:1000") from None
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"type {part!r}: MIN and MAX must be finite with MIN < MAX")
            spec = TypeSpec(name, low, high)
        elif name in KNOWN_TYPES:
            spec = KNOWN_TYPES[name]
        else:
            raise ValueError(f"unknown type {name!r}: use one of {', '.join(KNOWN_TYPES)} "
                             "or give a range as NAME:MIN:MAX")
        if any(s.name == spec.name for s in specs):
            raise ValueError(f"type {spec.name!r} given twice")
        specs.append(spec)
    return specs


def device_rng(seed: int | None, sensor_id: str | int, type_name: str) -> random.Random:
    """One generator per device and type: with a seed, a device's values depend only on (seed, sensor,
    type), not on how many devices run or how the network behaved, so a run is reproducible."""
    if seed is None:
        return random.Random()  # seeded from os.urandom
    # str seeds are hashed with SHA-512 by random.seed (version 2): stable across processes and runs,
    # unlike hash(), which PYTHONHASHSEED randomises.
    return random.Random(f"{seed}:{sensor_id}:{type_name}")


class RandomWalk:
    """Bounded random walk: Gaussian steps, reflected at the range's edges so values stay inside."""

    __slots__ = ("rng", "sigma", "spec", "value")

    def __init__(self, spec: TypeSpec, rng: random.Random):
        self.spec = spec
        self.rng = rng
        self.value = rng.uniform(spec.low, spec.high)
        self.sigma = (spec.high - spec.low) * spec.step

    def next(self) -> float | int:
        low, high = self.spec.low, self.spec.high
        v = self.value + self.rng.gauss(0.0, self.sigma)
        # Reflection instead of clamping: clamping would pile values up on the bounds.
        if v > high:
            v = 2 * high - v
        if v < low:
            v = 2 * low - v
        v = min(max(v, low), high)  # a step larger than the range could still overshoot after one reflection
        self.value = v
        return _rounded(v, self.spec)


class Uniform:
    """The course's generator: an independent uniform draw each time (integers when the range is)."""

    __slots__ = ("integers", "rng", "spec")

    def __init__(self, spec: TypeSpec, rng: random.Random):
        self.spec = spec
        self.rng = rng
        self.integers = float(spec.low).is_integer() and float(spec.high).is_integer()

    def next(self) -> float | int:
        if self.integers:  # temp: 20..34 inclusive, like `$(( (RANDOM % 15) + 20 ))`
            return self.rng.randint(int(self.spec.low), int(self.spec.high))
        return _rounded(self.rng.uniform(self.spec.low, self.spec.high), self.spec)


def _rounded(v: float, spec: TypeSpec) -> float | int:
    r = round(v, spec.decimals)
    r = min(max(r, spec.low), spec.high)  # rounding must not step outside the range either
    return int(r) if spec.decimals == 0 else r


def make_generator(spec: TypeSpec, rng: random.Random, uniform: bool = False) -> RandomWalk | Uniform:
    return Uniform(spec, rng) if uniform else RandomWalk(spec, rng)
