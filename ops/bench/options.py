"""The options of `invoke bench`, checked before anything starts: a bad one is one line, exit status 2."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .common import ROOT, OptionError
from .scenarios import SCENARIOS

OUT = Path("build/bench/results.json")
SOAK_OUT = Path("build/bench/soak.json")
DOCS_PLOT = ROOT / "docs" / "benchmarks" / "throughput.png"


@dataclass(frozen=True)
class Options:
    seconds: float = 10.0
    workers: int = 2
    scenarios: tuple[str, ...] = SCENARIOS
    connections: tuple[int, ...] = (1, 8, 64, 256)
    batch_sizes: tuple[int, ...] = (100, 1000)
    soak: bool = False
    soak_seconds: float = 600.0
    out: Path = OUT
    plot_only: bool = False
    docs: bool = False

    @property
    def plot(self) -> Path:
        """The plot goes next to the JSON."""
        return self.out.with_name("throughput.png")

    def describe(self) -> str:
        docs = f", copied to {DOCS_PLOT.relative_to(ROOT)}" if self.docs else ""
        if self.plot_only:
            return f"would plot {self.out} to {self.plot}{docs}"
        if self.soak:
            return f"would soak the api for {self.soak_seconds:g} s ({self.workers} workers), results to {self.out}"
        return (f"would run {', '.join(self.scenarios)}: {self.seconds:g} s per scenario, {self.workers} api workers, "
                f"single readings at {', '.join(map(str, self.connections))} connections, results to {self.out}, "
                f"plot to {self.plot}{docs}")


def _number(option: str, raw, kind=float, lo: float = 0, hi: float = 86_400):
    try:
        value = kind(str(raw).strip())
    except ValueError:
        value = None
    if value is None or not lo < value <= hi:
        what = "an integer" if kind is int else "a number"
        raise OptionError(f"--{option}: must be {what} greater than {lo:g} and at most {hi:g}, got {raw!r}")
    return value


def _list(option: str, raw: str) -> list[str]:
    items = [item.strip() for item in str(raw).split(",")]
    if not all(items):
        raise OptionError(f"--{option}: a comma-separated list without empty items, got {raw!r}")
    return items


def parse(seconds=None, workers=None, scenarios=None, connections=None, soak=False, soak_seconds=None, out=None,
          plot_only=False, docs=False) -> Options:
    """The task's raw options (strings or None) as checked Options."""
    measuring = {"--seconds": seconds, "--scenarios": scenarios, "--connections": connections}
    if soak and plot_only:
        raise OptionError("--soak and --plot-only do not go together")
    if soak and any(v is not None for v in measuring.values()):
        given = ", ".join(k for k, v in measuring.items() if v is not None)
        raise OptionError(f"--soak runs only the soak: {given} do not apply (use --soak-seconds)")
    if soak and docs:
        raise OptionError("--docs copies the throughput plot, which the soak does not draw")
    if soak_seconds is not None and not soak:
        raise OptionError("--soak-seconds needs --soak")
    if plot_only and (workers is not None or any(v is not None for v in measuring.values())):
        raise OptionError("--plot-only measures nothing: give only --out (the JSON to plot) and --docs")
    opts = {"soak": bool(soak), "plot_only": bool(plot_only), "docs": bool(docs),
            "out": Path(out) if out else (SOAK_OUT if soak else OUT)}
    if seconds is not None:
        opts["seconds"] = _number("seconds", seconds)
    if workers is not None:
        opts["workers"] = _number("workers", workers, int, 0, 64)
    if soak_seconds is not None:
        opts["soak_seconds"] = _number("soak-seconds", soak_seconds)
    if scenarios is not None:
        chosen = _list("scenarios", scenarios)
        unknown = [s for s in chosen if s not in SCENARIOS]
        if unknown:
            raise OptionError(f"--scenarios: unknown scenario {unknown[0]!r} (choose from {', '.join(SCENARIOS)})")
        opts["scenarios"] = tuple(s for s in SCENARIOS if s in chosen)
    if connections is not None:
        counts = {_number("connections", c, int, 0, 10_000) for c in _list("connections", connections)}
        opts["connections"] = tuple(sorted(counts))
    return Options(**opts)
