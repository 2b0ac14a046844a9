"""A faithful local Cloud Tasks emulator: ``python -m emulator``.

gRPC ``google.cloud.tasks.v2.CloudTasks`` and the REST v2 API over one store,
HTTP delivery with Google's headers, OIDC ID tokens, retries, rate limits and
SQLite persistence. See emulator/README.md. ``emulator.testing.EmulatorProcess``
runs it as a subprocess for tests.
"""
