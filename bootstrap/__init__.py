"""The bootstrap program: GitHub OIDC trust and the deployer account (see README.md)."""
