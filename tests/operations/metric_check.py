"""A Cloud Monitoring filter checked against Google's published metrics (`contract.gcp_metrics`)
and the log-based metrics a plan declares: the grammar the program writes, the metric
type, its resource type and every label. Returns the problems, empty when none."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from contract.gcp_metrics import LOG_BASED_METRIC_PREFIX, PUBLISHED_METRICS, RESOURCE_LABELS

TERM = re.compile(
    r"^(?P<key>metric\.type|resource\.type|(?:resource|metric)\.label\.[a-z_]+)"
    r'(?P<op>=|!=)(?P<value>"[^"]*"|one_of\("[^"]*"(?:,"[^"]*")*\))$'
)


def known_metrics(
    log_metrics: Mapping[str, tuple[str, Iterable[str]]],
) -> dict[str, tuple[str, frozenset[str]]]:
    """Metric type -> (resource type, labels): published ones and `log_metrics`
    (log metric name -> (resource type of its entries, its labels))."""
    known = {t: (d.resource_type, d.labels) for t, d in PUBLISHED_METRICS.items()}
    for name, (resource, labels) in log_metrics.items():
        known[f"{LOG_BASED_METRIC_PREFIX}{name}"] = (resource, frozenset(labels))
    return known


def filter_problems(
    text: str,
    known: Mapping[str, tuple[str, frozenset[str]]],
    group_by: Iterable[str] = (),
) -> list[str]:
    problems = []
    terms: dict[str, str] = {}
    labels: list[str] = list(group_by)
    for term in text.split(" AND "):
        match = TERM.match(term)
        if match is None:
            problems.append(f"not a filter term this program writes: {term!r}")
            continue
        key = match["key"]
        if key in ("metric.type", "resource.type"):
            terms[key] = match["value"].strip('"')
        else:
            labels.append(key)
    metric = terms.get("metric.type", "")
    if metric not in known:
        return [*problems, f"metric type {metric!r} is not published (contract.gcp_metrics)"]
    resource, metric_labels = known[metric]
    if terms.get("resource.type") != resource:
        problems.append(f"{metric} is written against {resource}, not {terms.get('resource.type')}")
    for label in labels:
        scope, _, name = label.partition(".label.")
        allowed = RESOURCE_LABELS[resource] if scope == "resource" else metric_labels
        if name not in allowed:
            problems.append(
                f"{label} is not a label of {scope} {metric if scope == 'metric' else resource}"
            )
    return problems
