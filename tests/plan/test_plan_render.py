"""Text, Mermaid and diff renderings of a plan."""

from __future__ import annotations

import dataclasses
import json
import re

from contract.resources import QUEUE_TYPE
from plan.diagrams import DOCUMENTED_STACK, plan_diagrams
from plan.diff import diff_plans, flatten, render_diff
from plan.model import Plan
from plan.render import render_mermaid, render_text


def test_text_is_a_tree_of_every_resource_with_outputs(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["dev"]
    text = render_text(plan)
    lines = text.splitlines()
    for resource in plan.resources:
        assert any(resource.name in line and resource.type in line for line in lines), resource.name
    assert "pulumi:pulumi:Stack" in lines[3]
    assert re.search(r"└─ tasks:index:TaskPipeline\s+tasks\b", text)
    assert re.search(
        r"│  ├─ gcp:cloudtasks/queue:Queue\s+tasks-queue-queue\s+5/s, 10 concurrent", text
    )
    assert re.search(r'invoker_email\s*: "' + re.escape(plan.outputs["invoker_email"]), text)
    assert re.search(r'dispatch_deadline\s*: "60s"', text)


def edges(mermaid: str) -> list[tuple[str, str, str]]:
    labels = dict(re.findall(r'^\s+(n\d+)[\[\(]+"([^"]+)"', mermaid, re.M))
    found = []
    for source, label, target in re.findall(r'^\s+(n\d+) \S+\|"([^"]+)"\| (n\d+)$', mermaid, re.M):
        found.append((labels[source], label, labels[target]))
    return found


def test_mermaid_draws_who_may_invoke_enqueue_and_act_as(all_plans: dict[str, Plan]) -> None:
    mermaid = render_mermaid(all_plans["dev"])
    project = all_plans["dev"].exports.project
    assert mermaid.startswith("flowchart LR\n    %% the plan, drawn by python -m plan")
    drawn = edges(mermaid)
    # bootstrap/ creates the accounts: the plan draws them as the members it grants.
    invoker = f"serviceAccount:tasks-invoker@{project}.iam.gserviceaccount.com"
    assert (invoker, "run.invoker", "Cloud Run service<br/>tasks-worker") in drawn
    enqueuer = f"serviceAccount:tasks-enqueuer@{project}.iam.gserviceaccount.com"
    assert any(
        s == enqueuer and "cloudtasks.enqueuer" in label and t.startswith("Cloud Tasks queue")
        for s, label, t in drawn
    )
    assert any(
        s == enqueuer and label.startswith("acts as") and t == invoker for s, label, t in drawn
    )
    assert any(
        s.startswith("Cloud Run service")
        and label == "runs as"
        and t.startswith("serviceAccount:tasks-runtime@")
        for s, label, t in drawn
    )


def test_mermaid_shows_configured_principals_and_the_queue_level_token(
    all_plans: dict[str, Plan],
) -> None:
    prod = all_plans["prod"]
    mermaid = render_mermaid(prod)
    configured = {grant.member for grant in prod.queue_grants()}
    assert configured, "the prod stack names its own enqueuers"
    assert all(member in mermaid for member in configured)
    assert f"push task, OIDC as {prod.exports.invoker_email}" in mermaid


def test_flatten_paths() -> None:
    assert flatten({"a": {"b": [1, {"c": 2}]}, "d": []}) == {"a.b[0]": 1, "a.b[1].c": 2, "d": []}


def test_flatten_keys_named_items_and_expands_embedded_json() -> None:
    """One inserted env var or one changed dashboard tile is one line of the diff."""
    envs = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    before = flatten({"envs": envs})
    after = flatten({"envs": [{"name": "NEW", "value": "0"}, *envs]})
    assert before == {
        "envs[A].name": "A",
        "envs[A].value": "1",
        "envs[B].name": "B",
        "envs[B].value": "2",
    }
    assert {k: v for k, v in after.items() if k not in before} == {
        "envs[NEW].name": "NEW",
        "envs[NEW].value": "0",
    }
    assert all(after[k] == v for k, v in before.items())
    # Items without a distinct name stay positional.
    assert flatten({"x": [{"name": "a"}, {"name": "a"}]}) == {"x[0].name": "a", "x[1].name": "a"}

    def dashboard(title: str) -> str:
        return json.dumps({"tiles": [{"widget": {"title": "depth"}}, {"widget": {"title": title}}]})

    changed = {
        k: v
        for k, v in flatten({"j": dashboard("late")}).items()
        if flatten({"j": dashboard("old")})[k] != v
    }
    assert changed == {"j<json>.tiles[1].widget.title": "late"}
    # Strings that merely look like JSON, and scalars, stay what they are.
    assert flatten({"s": "{not json", "e": "[]", "n": "42"}) == {
        "s": "{not json",
        "e": "[]",
        "n": "42",
    }


def test_diff_reports_added_removed_and_changed_inputs(all_plans: dict[str, Plan]) -> None:
    old = all_plans["dev"]
    queue = old.one(QUEUE_TYPE)
    faster = dataclasses.replace(
        queue,
        inputs={
            **queue.inputs,
            "rateLimits": {**queue.inputs["rateLimits"], "maxDispatchesPerSecond": 7},
        },
    )
    dropped = old.resources[-1]
    extra = dataclasses.replace(queue, urn=queue.urn + "-2", name=queue.name + "-2")
    new = dataclasses.replace(
        old,
        resources=(
            *tuple(faster if r is queue else r for r in old.resources if r is not dropped),
            extra,
        ),
        outputs={**old.outputs, "audience": "https://other.example.com"},
    )
    diff = diff_plans(old, new)
    assert [r.name for r in diff.added] == [extra.name]
    assert [r.name for r in diff.removed] == [dropped.name]
    assert [(r.name, [(c.path, c.old, c.new) for c in cs]) for r, cs in diff.modified] == [
        (queue.name, [("inputs.rateLimits.maxDispatchesPerSecond", 5, 7)])
    ]
    text = render_diff(diff, "dev")
    assert "~ gcp:cloudtasks/queue:Queue  tasks-queue-queue" in text
    assert "inputs.rateLimits.maxDispatchesPerSecond: 5 => 7" in text
    assert "1 to add, 1 to change, 1 to delete" in text
    assert '~ audience: "https://' in text
    assert diff.to_json()["added"] == [extra.urn]


def test_no_diff_says_so(all_plans: dict[str, Plan]) -> None:
    diff = diff_plans(all_plans["dev"], all_plans["dev"])
    assert diff.empty
    assert "matches the committed snapshot" in render_diff(diff, "dev")


def test_the_diagram_in_the_readme_is_the_dev_plans(all_plans: dict[str, Plan]) -> None:
    from plan.stack_config import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    assert plan_diagrams(readme) == [render_mermaid(all_plans[DOCUMENTED_STACK])], (
        "README.md: regenerate with `make snapshots`"
    )


def test_every_embedded_plan_diagram_matches_a_stack(all_plans: dict[str, Plan]) -> None:
    """The README (or any doc) may embed a plan diagram: it must be the program's."""
    from plan.stack_config import REPO_ROOT

    current = {render_mermaid(plan) for plan in all_plans.values()}
    for doc in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        if not doc.is_file():
            continue
        for block in re.findall(r"```mermaid\n(.*?)```", doc.read_text(), re.S):
            if "APIs enabled:" in block:  # a plan diagram, not a hand-drawn one
                assert block in current, f"{doc.name}: regenerate with `make snapshots`"


def test_a_running_queue_gaining_a_queue_level_target_is_told_to_pause_first(
    all_plans: dict[str, Plan],
) -> None:
    new = all_plans["staging"]  # queue_http_target on
    queue = new.one(QUEUE_TYPE)
    assert "httpTarget" in queue.inputs
    before = dataclasses.replace(
        queue, inputs={k: v for k, v in queue.inputs.items() if k != "httpTarget"}
    )
    old = dataclasses.replace(
        new, resources=tuple(before if r is queue else r for r in new.resources)
    )
    diff = diff_plans(old, new)
    [note] = diff.notes
    assert "is running and gains a queue-level target" in note
    assert "queue_paused: true" in note
    assert f"Note: {note}" in render_diff(diff, "staging")
    assert diff.to_json()["notes"] == [note]

    paused = dataclasses.replace(queue, inputs={**queue.inputs, "desiredState": "PAUSED"})
    paused_new = dataclasses.replace(
        new, resources=tuple(paused if r is queue else r for r in new.resources)
    )
    [note] = diff_plans(old, paused_new).notes
    assert "while paused" in note
    # A queue created with its target, or one that keeps it, needs nothing.
    assert diff_plans(new, new).notes == ()


def test_a_changed_dashboard_tile_is_one_line_of_the_diff(all_plans: dict[str, Plan]) -> None:
    old = all_plans["prod"]
    [board] = [r for r in old.resources if "dashboardJson" in r.inputs]
    document = json.loads(board.inputs["dashboardJson"])
    tiles = document["mosaicLayout"]["tiles"]
    first_title = tiles[0]["widget"]["title"]
    tiles[0]["widget"]["title"] = "renamed"
    edited = dataclasses.replace(
        board, inputs={**board.inputs, "dashboardJson": json.dumps(document)}
    )
    new = dataclasses.replace(
        old, resources=tuple(edited if r is board else r for r in old.resources)
    )
    [(_board, changes)] = diff_plans(old, new).modified
    assert [(c.path, c.old, c.new) for c in changes] == [
        ("inputs.dashboardJson<json>.mosaicLayout.tiles[0].widget.title", first_title, "renamed")
    ]
    assert len(render_diff(diff_plans(old, new), "prod").splitlines()) < 10
