"""Operations commands for a stack (``python -m ops``): tasks, queues, dead letters.

- ``ops.cli``: the command line (parsing, printing, exit codes);
- ``ops.tasks``: list/show/cancel tasks, pause/resume/purge queues (Cloud Tasks API);
- ``ops.dead_letters``: the worker's dead-letter records, read from the bucket;
- ``ops.replay``: dead letters enqueued again under derived names;
- ``ops.bodies``: how a body is shown (JSON, else base64).

Everything goes through the enqueue helper's outputs, queues and clients, so a
deployed stack and the local one behave the same. Nothing is imported here, so
``python -m ops --help`` stays fast.
"""
