"""The bootstrap Pulumi program: read config, create the GitHub deployer, export.

Outputs (set as the repository variables of docs/ci.md, suffixed with the stack:
`workload_identity_provider` -> GCP_WORKLOAD_IDENTITY_PROVIDER_<STACK>,
`service_account` -> GCP_SERVICE_ACCOUNT_<STACK> (deploys, environment jobs only),
`preview_service_account` -> GCP_PREVIEW_SERVICE_ACCOUNT_<STACK> (read-only previews).

Without `github_repository` only the foundation is created (deploys from a
workstation with your own credentials). This file deliberately declares nothing
itself: bootstrap/foundation.py and bootstrap/deployer.py do.
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
from bootstrap.foundation import Foundation  # noqa: E402
from bootstrap.main_stack import read_main_stack  # noqa: E402

config = load_config()
main_stack = read_main_stack(config.main_stack)
if main_stack.project != config.project:
    raise ValueError(
        f"gcp:project here is {config.project!r} but the main stack {main_stack.stack!r} "
        f"deploys into {main_stack.project!r}: run `pulumi config set gcp:project "
        f"{main_stack.project}` in bootstrap/ (or set main_stack to the right stack)"
    )
foundation = Foundation("pipeline", main_stack)
pulumi.export("invoker_email", foundation.invoker.email)
pulumi.export("runtime_email", foundation.runtime.email)
pulumi.export("enqueuer_email", foundation.enqueuer.email)
pulumi.export("tasks_agent_email", foundation.tasks_agent.email)

deployer = None
if config.github_repository:
    deployer = GitHubDeployer("github", config, foundation)
    pulumi.export("workload_identity_provider", deployer.provider.name)
    pulumi.export("service_account", deployer.account.email)
    pulumi.export("principal_set", deployer.principal_set)
    pulumi.export("preview_service_account", deployer.previewer.email)
