"""The local stack: a stack's plan (`plan`) realised on this machine (emulator queue,
worker process, OIDC issuer), and the daily tools around it (`python -m devstack`)."""
