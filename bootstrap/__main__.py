"""The bootstrap Pulumi program: read config, create the GitHub deployer, export.

Outputs (set as the repository variables of docs/ci.md, suffixed with the stack:
`workload_identity_provider` -> GCP_WORKLOAD_IDENTITY_PROVIDER_<STACK>,
`service_account` -> GCP_SERVICE_ACCOUNT_<STACK> (deploys, environment jobs only),
`preview_service_account` -> GCP_PREVIEW_SERVICE_ACCOUNT_<STACK> (read-only previews).

This file deliberately declares nothing itself: bootstrap/deployer.py does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi

# Pulumi runs this file from bootstrap/; the package import needs the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from bootstrap.deployer import GitHubDeployer, load_config  # noqa: E402

deployer = GitHubDeployer("github", load_config())
pulumi.export("workload_identity_provider", deployer.provider.name)
pulumi.export("service_account", deployer.account.email)
pulumi.export("principal_set", deployer.principal_set)
pulumi.export("preview_service_account", deployer.previewer.email)
