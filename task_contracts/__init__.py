"""The task types' payload contracts: one committed JSON Schema per task type, and
what a change to them does to tasks already queued.

A task is validated when it is delivered, not when it is created, and it may
wait in its queue up to 30 days (scheduled ahead, then retried). So the payload
model of a task type is a contract with every task already queued: the
committed schemas (`task_contracts/schemas/<type>.schema.json`) make it
reviewable, and a pull request's comment says which contracts it changes and
which changes would make queued tasks fail against the new worker.

- `task_contracts.store`: the committed directory, reading and writing schema files;
- `task_contracts.export`: the worker's task types (built-ins and every stack's
  `task_modules`) to schema files, deterministically;
- `task_contracts.compat`: base against head, each change breaking or not (pure);
- `task_contracts.report`: the "Task contracts" section of the PR comment;
- `task_contracts.cli`: `python -m task_contracts export | diff`.

Deliberately not here: any opinion on how a team migrates a payload (README,
"Task contracts"), and anything the worker runs (it never reads these files).
"""
