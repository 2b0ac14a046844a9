"""A strict reader of the Prometheus text exposition format 0.0.4, for the tests.

https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format:
`# HELP` and `# TYPE` lines, samples `name{label="value",...} value`, label values
escaped (`\\\\`, `\\"`, `\\n` only), a family's samples together and after its
TYPE line, one TYPE per family, no series twice, histograms with cumulative
`_bucket{le=...}` series ending in `+Inf` equal to `_count`, counters never negative.

When `prometheus_client` is installed, `parse` also runs its parser
(`prometheus_client.parser.text_string_to_metric_families`) over the same text and
requires the two to agree; the project does not depend on it, so this module
carries the strict reading itself.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE = r"[-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)"
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? ({_VALUE})(?: (-?[0-9]+))?")
_PAIR = re.compile(rf'({_LABEL})="((?:[^"\\\n]|\\[\\"n])*)"')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


class ExpositionError(ValueError):
    """The text is not valid exposition format; the message names the line."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[Sample] = field(default_factory=list)

    def value(self, suffix: str = "", **labels: str) -> float:
        """The one sample of `name + suffix` whose labels include `labels`."""
        found = [
            s
            for s in self.samples
            if s.name == self.name + suffix and labels.items() <= s.labels.items()
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} samples of {self.name}{suffix} with {labels}")
        return found[0].value


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def _labels(text: str, line_no: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    rest = text.rstrip(",")
    while rest:
        match = _PAIR.match(rest)
        if match is None:
            raise ExpositionError(f"line {line_no}: bad label set {text!r}")
        if match.group(1) in labels:
            raise ExpositionError(f"line {line_no}: label {match.group(1)} twice")
        labels[match.group(1)] = _unescape(match.group(2))
        rest = rest[match.end() :]
        if rest and not rest.startswith(","):
            raise ExpositionError(f"line {line_no}: labels must be separated by commas")
        rest = rest[1:]
    return labels


def _family_of(sample: str, families: dict[str, Family]) -> Family | None:
    for family in families.values():
        suffixes = _SUFFIXES.get(family.type, ("",))
        if any(sample == family.name + suffix for suffix in suffixes):
            return family
    return None


def _strict(text: str) -> dict[str, Family]:
    if text and not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a line feed")
    families: dict[str, Family] = {}
    current: Family | None = None
    closed: set[str] = set()
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(_NAME, name):
                    raise ExpositionError(f"line {line_no}: bad metric name {name!r}")
                if name in closed:
                    raise ExpositionError(f"line {line_no}: family {name} is not contiguous")
                family = families.setdefault(name, Family(name))
                if current is not None and current is not family:
                    closed.add(current.name)
                current = family
                if parts[1] == "TYPE":
                    kind = parts[3] if len(parts) == 4 else ""
                    if kind not in _TYPES:
                        raise ExpositionError(f"line {line_no}: unknown type {kind!r}")
                    if family.samples or family.type != "untyped":
                        raise ExpositionError(f"line {line_no}: TYPE of {name} after its samples")
                    family.type = kind
                else:
                    family.help = parts[3] if len(parts) == 4 else ""
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise ExpositionError(f"line {line_no}: not a sample: {line!r}")
        name, label_text, raw = match.group(1), match.group(2) or "", match.group(3)
        labels = _labels(label_text, line_no)
        owner = _family_of(name, families) or families.setdefault(name, Family(name))
        if owner.name in closed:
            raise ExpositionError(f"line {line_no}: family {owner.name} is not contiguous")
        if current is not None and current is not owner:
            closed.add(current.name)
        current = owner
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ExpositionError(f"line {line_no}: series {name}{labels} twice")
        seen.add(key)
        value = float(raw.replace("Inf", "inf"))
        if owner.type == "counter" and not value >= 0:
            raise ExpositionError(f"line {line_no}: counter {name} is {raw}")
        owner.samples.append(Sample(name, labels, value))
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: Family) -> None:
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for sample in family.samples:
        rest = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        if sample.name.endswith("_bucket"):
            if "le" not in sample.labels:
                raise ExpositionError(f"{sample.name} without le")
            bound = float(sample.labels["le"].replace("Inf", "inf"))
            series.setdefault(rest, []).append((bound, sample.value))
        elif sample.name.endswith("_count"):
            counts[rest] = sample.value
    for rest, buckets in series.items():
        bounds = [b for b, _ in buckets]
        if bounds != sorted(bounds) or bounds[-1] != math.inf:
            raise ExpositionError(f"{family.name}{dict(rest)}: buckets not ending in +Inf")
        values = [v for _, v in buckets]
        if values != sorted(values):
            raise ExpositionError(f"{family.name}{dict(rest)}: buckets not cumulative")
        if counts.get(rest) != values[-1]:
            raise ExpositionError(f"{family.name}{dict(rest)}: _count is not the +Inf bucket")


def parse(text: str) -> dict[str, Family]:
    """Every family of `text` by name; raises ExpositionError on anything invalid."""
    families = _strict(text)
    try:
        parser = importlib.import_module("prometheus_client.parser")
    except ModuleNotFoundError:
        return families
    theirs = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }
    ours = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in families.values()
        for s in family.samples
    }
    if theirs != ours:
        raise ExpositionError(f"prometheus_client reads it differently: {theirs ^ ours}")
    return families
