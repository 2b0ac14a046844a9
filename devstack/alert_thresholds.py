"""The alert policies of a stack's plan, as thresholds a local view can compare against.

`up` records them (`StackState.alerts`) from the very plan it realises, so that
`python -m devstack watch` shows, next to the live values of the local stack, the
thresholds of the alerts the cloud stack declares: nothing is derived again
here. Each `gcp:monitoring/alertPolicy:AlertPolicy` of the plan becomes one
`PlannedAlert`: whose it is (a queue key, or `worker`), its signal
(`userLabels.signal`), the metric type, the response codes or class its filter
selects, whether it is a ratio, and the threshold (`COMPARISON_GT`) and duration
of its condition. The queue a policy watches is found from the queue id its
filter names (`resource.label.queue_id`, or `metric.label.queue_name` for dead
letters) and the plan's `queues` output.

Pure: no I/O. Deliberately not here: measuring anything (`devstack.live_signals`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from contract.resources import ALERT_POLICY_TYPE
from plan.model import Plan
from plan.views import last_segment

WORKER = "worker"

_METRIC_TYPE = re.compile(r'metric\.type="([^"]+)"')
_QUEUE_ID = re.compile(r'(?:resource\.label\.queue_id|metric\.label\.queue_name)="([^"]+)"')
_CODES = re.compile(r"metric\.label\.response_code=one_of\(([^)]*)\)")
_CODE_CLASS = re.compile(r'metric\.label\.response_code_class="([^"]+)"')
_SERVICE = re.compile(r'resource\.label\.service_name="([^"]+)"')


@dataclass(frozen=True)
class PlannedAlert:
    """One alert policy's condition, as the plan declares it."""

    subject: str  # a queue key, or "worker"
    signal: str  # userLabels.signal: queue-depth, failure-ratio-5xx, ...
    title: str  # the condition's display name: "tasks in the queue > 1000 tasks"
    metric_type: str
    threshold: float
    duration_s: float  # how long the condition must hold before the alert fires
    window_s: float  # the alignment period its points are counted over
    severity: str
    ratio: bool  # numerator / denominator (both the same metric, the denominator unfiltered)
    response_codes: tuple[str, ...] = ()  # only these `response_code`s (empty: all)
    response_code_class: str = ""  # only this `response_code_class` (empty: all)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlannedAlert:
        fields = dict(data)
        fields["response_codes"] = tuple(fields.get("response_codes") or ())
        return cls(**fields)


def _seconds(duration: object) -> float:
    text = str(duration or "0s")
    return float(text[:-1]) if text.endswith("s") else float(text)


def _alert(inputs: dict[str, Any], keys_by_id: dict[str, str]) -> PlannedAlert | None:
    conditions = inputs.get("conditions") or []
    if not conditions or "conditionThreshold" not in conditions[0]:
        return None
    condition = conditions[0]["conditionThreshold"]
    if condition.get("comparison") != "COMPARISON_GT":
        return None  # every policy of components.monitoring fires above its threshold
    text = str(condition.get("filter", ""))
    metric = _METRIC_TYPE.search(text)
    queue_id = _QUEUE_ID.search(text)
    if metric is None:
        return None
    if queue_id is not None:
        subject = keys_by_id.get(queue_id.group(1))
        if subject is None:
            return None  # a queue this plan does not export: nothing local to watch
    elif _SERVICE.search(text):
        subject = WORKER
    else:
        return None
    codes = _CODES.search(text)
    code_class = _CODE_CLASS.search(text)
    return PlannedAlert(
        subject=subject,
        signal=str((inputs.get("userLabels") or {}).get("signal", "")),
        title=str(conditions[0].get("displayName", "")),
        metric_type=metric.group(1),
        threshold=float(condition.get("thresholdValue", 0)),
        duration_s=_seconds(condition.get("duration")),
        window_s=_seconds((condition.get("aggregations") or [{}])[0].get("alignmentPeriod")),
        severity=str(inputs.get("severity", "")),
        ratio=bool(condition.get("denominatorFilter")),
        response_codes=tuple(c.strip().strip('"') for c in codes.group(1).split(","))
        if codes
        else (),
        response_code_class=code_class.group(1) if code_class else "",
    )


def planned_alerts(plan: Plan) -> list[PlannedAlert]:
    """Every alert policy of `plan` that watches one of its queues or its worker."""
    keys_by_id = {last_segment(path): key for key, path in plan.exports.queues.items()}
    alerts = [_alert(r.inputs, keys_by_id) for r in plan.of_type(ALERT_POLICY_TYPE)]
    return [a for a in alerts if a is not None]
