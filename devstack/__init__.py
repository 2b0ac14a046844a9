"""The local stack: the Pulumi program evaluated offline into a plan, and that
plan realised on this machine (emulator queue, worker process, OIDC issuer)."""
