"""The offline plan: the Pulumi program evaluated under Pulumi's in-process mocks.

`python -m plan --stack S [--format text|json|mermaid] [--diff]` prints a stack's
plan; `python -m plan snapshot --stack S | --all` rewrites the committed
snapshots (tests/snapshots/plan-<stack>.json). CI previews, the policy check,
the component tests, the snapshots and the local stack all read one typed model.

Modules, and what each owns:

- `plan.model`: the typed plan (`Plan`, `PlannedResource`) and its JSON shape;
- `plan.views`: typed views of the resources consumers look at (queue, Cloud Run
  service, IAM grants, service accounts, stack exports);
- `plan.stack_config`: `Pulumi.<stack>.yaml` read as the Pulumi CLI passes it;
- `plan.mocks`: the outputs Google Cloud would compute, deterministically;
- `plan.engine`: running the program under the mocks and recording what it declares;
- `plan.snapshots`: the committed snapshot files;
- `plan.diagrams`: the plan diagrams embedded in README.md and docs/, redrawn by `snapshot`;
- `plan.render` and `plan.diff`: text, Mermaid and diff renderings (pure functions);
- `plan.cli`: the command line.

The package deliberately does not call the Pulumi CLI, a provider plugin or
Google Cloud, does not judge a plan (the policy pack and tests do), and does not
start anything locally (`devstack` realises a plan on this machine). This file
imports nothing, so that reading a plan (`plan.model`) never loads the Pulumi SDK.
"""
