"""Pulumi names two parts must agree on: the project's config namespace, resource
type tokens, IAM role names and the principals that mean "everyone".

The program creates resources of these types; the offline plan, the local
realisation, the policy pack and the deployer's role list read them back. A type
token is the engine's name for a resource class (``pulumi_gcp`` 10.x: the
``__init__`` of each resource class passes it to ``super().__init__``), so a
token misspelt in one reader would silently match nothing.
"""

from __future__ import annotations

from typing import Final

# --- project and config namespace (Pulumi.yaml `name`) --------------------------------
PROJECT_NAME: Final = "cloud-tasks-pipeline"
GCP_PROJECT_KEY: Final = "gcp:project"
GCP_REGION_KEY: Final = "gcp:region"


def config_key(field: str) -> str:
    """The full stack-config key of a program setting: ``cloud-tasks-pipeline:<field>``."""
    return f"{PROJECT_NAME}:{field}"


# --- resource type tokens (pulumi-gcp 10.x, pulumi-docker-build 0.0.x) ----------------------
QUEUE_TYPE: Final = "gcp:cloudtasks/queue:Queue"
QUEUE_IAM_MEMBER_TYPE: Final = "gcp:cloudtasks/queueIamMember:QueueIamMember"
RUN_SERVICE_TYPE: Final = "gcp:cloudrunv2/service:Service"
RUN_SERVICE_IAM_MEMBER_TYPE: Final = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
RUN_SERVICE_IAM_BINDING_TYPE: Final = "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding"
RUN_SERVICE_IAM_POLICY_TYPE: Final = "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy"
LEGACY_RUN_SERVICE_TYPE: Final = "gcp:cloudrun/service:Service"
LEGACY_RUN_IAM_MEMBER_TYPE: Final = "gcp:cloudrun/iamMember:IamMember"
LEGACY_RUN_IAM_BINDING_TYPE: Final = "gcp:cloudrun/iamBinding:IamBinding"
LEGACY_RUN_IAM_POLICY_TYPE: Final = "gcp:cloudrun/iamPolicy:IamPolicy"
SERVICE_ACCOUNT_TYPE: Final = "gcp:serviceaccount/account:Account"
SERVICE_ACCOUNT_IAM_MEMBER_TYPE: Final = "gcp:serviceaccount/iAMMember:IAMMember"
PROJECT_IAM_MEMBER_TYPE: Final = "gcp:projects/iAMMember:IAMMember"
PROJECT_IAM_BINDING_TYPE: Final = "gcp:projects/iAMBinding:IAMBinding"
PROJECT_IAM_POLICY_TYPE: Final = "gcp:projects/iAMPolicy:IAMPolicy"
PROJECT_IAM_CUSTOM_ROLE_TYPE: Final = "gcp:projects/iAMCustomRole:IAMCustomRole"
PROJECT_SERVICE_TYPE: Final = "gcp:projects/service:Service"
SERVICE_IDENTITY_TYPE: Final = "gcp:projects/serviceIdentity:ServiceIdentity"
ARTIFACT_REPOSITORY_TYPE: Final = "gcp:artifactregistry/repository:Repository"
FOLDER_IAM_BINDING_TYPE: Final = "gcp:folder/iAMBinding:IAMBinding"
FOLDER_IAM_POLICY_TYPE: Final = "gcp:folder/iAMPolicy:IAMPolicy"
ORGANIZATION_IAM_BINDING_TYPE: Final = "gcp:organizations/iAMBinding:IAMBinding"
ORGANIZATION_IAM_POLICY_TYPE: Final = "gcp:organizations/iAMPolicy:IAMPolicy"
IMAGE_TYPE: Final = "docker-build:index:Image"
# Operations (components.monitoring): alerting, log-based metrics, the dashboard.
ALERT_POLICY_TYPE: Final = "gcp:monitoring/alertPolicy:AlertPolicy"
NOTIFICATION_CHANNEL_TYPE: Final = "gcp:monitoring/notificationChannel:NotificationChannel"
DASHBOARD_TYPE: Final = "gcp:monitoring/dashboard:Dashboard"
LOG_METRIC_TYPE: Final = "gcp:logging/metric:Metric"
OPERATIONS_TYPE: Final = "tasks:index:Operations"
"""The Operations component; its inputs carry the expected volume the cost preview reads."""
BUCKET_TYPE: Final = "gcp:storage/bucket:Bucket"  # the dead-letter bucket
BUCKET_IAM_MEMBER_TYPE: Final = "gcp:storage/bucketIAMMember:BucketIAMMember"
# Provider functions (invokes) the program calls.
GET_PROJECT_INVOKE: Final = "gcp:organizations/getProject:getProject"
GET_CLIENT_CONFIG_INVOKE: Final = "gcp:organizations/getClientConfig:getClientConfig"

# --- Google Cloud APIs the pipeline calls (bootstrap/ enables them, minutes before the
# first deploy: enablement is eventually consistent, so the program never enables and
# uses an API in the same run) ------------------------------------------------------------
CLOUD_TASKS_API: Final = "cloudtasks.googleapis.com"
CLOUD_RUN_API: Final = "run.googleapis.com"
IAM_API: Final = "iam.googleapis.com"
IAM_CREDENTIALS_API: Final = "iamcredentials.googleapis.com"  # OIDC tokens minted for the invoker
ARTIFACT_REGISTRY_API: Final = "artifactregistry.googleapis.com"
RESOURCE_MANAGER_API: Final = "cloudresourcemanager.googleapis.com"  # project number lookup
SECRET_MANAGER_API: Final = "secretmanager.googleapis.com"  # noqa: S105 (an API name)
MONITORING_API: Final = "monitoring.googleapis.com"  # alert policies, channels, dashboard
LOGGING_API: Final = "logging.googleapis.com"  # log-based metrics
STORAGE_API: Final = "storage.googleapis.com"  # the dead-letter bucket
CLOUD_TRACE_API: Final = "cloudtrace.googleapis.com"  # the worker's spans (trace_export)
TELEMETRY_API: Final = "telemetry.googleapis.com"  # Cloud Trace's OTLP endpoint

PIPELINE_APIS: Final = (
    CLOUD_TASKS_API,
    CLOUD_RUN_API,
    IAM_API,
    IAM_CREDENTIALS_API,
    ARTIFACT_REGISTRY_API,
    RESOURCE_MANAGER_API,
    SECRET_MANAGER_API,
    MONITORING_API,
    STORAGE_API,
    LOGGING_API,
)


# --- the pipeline's service accounts (bootstrap/ creates them, the program names them) ----
INVOKER_ACCOUNT_SUFFIX: Final = "invoker"  # the OIDC identity of every task
RUNTIME_ACCOUNT_SUFFIX: Final = "runtime"  # what the worker container runs as
ENQUEUER_ACCOUNT_SUFFIX: Final = "enqueuer"  # creates tasks when config names no enqueuers


def account_id(prefix: str, suffix: str) -> str:
    """A pipeline account's id: ``PREFIX-invoker``, ``PREFIX-runtime``, ``PREFIX-enqueuer``."""
    return f"{prefix}-{suffix}"


def service_account_email(account: str, project: str) -> str:
    """A user-managed service account's email, known before it exists:
    ``ID@PROJECT.iam.gserviceaccount.com``
    (https://cloud.google.com/iam/docs/service-account-overview)."""
    return f"{account}@{project}.iam.gserviceaccount.com"


def service_account_resource_name(email: str, project: str) -> str:
    """The account's resource name, which ``serviceaccount.IAMMember`` takes."""
    return f"projects/{project}/serviceAccounts/{email}"


# --- IAM roles (cloud.google.com/iam/docs/understanding-roles) ---------------------------
RUN_INVOKER_ROLE: Final = "roles/run.invoker"
RUN_SERVICES_INVOKER_ROLE: Final = "roles/run.servicesInvoker"
RUN_ADMIN_ROLE: Final = "roles/run.admin"
RUN_DEVELOPER_ROLE: Final = "roles/run.developer"
CLOUDTASKS_ENQUEUER_ROLE: Final = "roles/cloudtasks.enqueuer"
CLOUDTASKS_ADMIN_ROLE: Final = "roles/cloudtasks.admin"
# The operators' queue-scoped roles (`python -m ops`): list/show tasks with their bodies
# (cloudtasks.tasks.fullView), cancel them, pause/resume/purge the queue
# (https://cloud.google.com/iam/docs/roles-permissions/cloudtasks). queueAdmin also holds
# queues.delete/update/setIamPolicy on that queue: the narrowest predefined role with
# pause, resume and purge (a custom role would need the deployer to manage roles).
CLOUDTASKS_VIEWER_ROLE: Final = "roles/cloudtasks.viewer"
CLOUDTASKS_TASK_DELETER_ROLE: Final = "roles/cloudtasks.taskDeleter"
CLOUDTASKS_QUEUE_ADMIN_ROLE: Final = "roles/cloudtasks.queueAdmin"
OPERATOR_QUEUE_ROLES: Final = (
    CLOUDTASKS_VIEWER_ROLE,
    CLOUDTASKS_TASK_DELETER_ROLE,
    CLOUDTASKS_QUEUE_ADMIN_ROLE,
)
# Read access to the dead letters (the dead-letter bucket's readers and the operators).
STORAGE_OBJECT_VIEWER_ROLE: Final = "roles/storage.objectViewer"
SERVICE_ACCOUNT_USER_ROLE: Final = "roles/iam.serviceAccountUser"
OPENID_TOKEN_CREATOR_ROLE: Final = "roles/iam.serviceAccountOpenIdTokenCreator"  # noqa: S105
SERVICE_ACCOUNT_ADMIN_ROLE: Final = "roles/iam.serviceAccountAdmin"
WORKLOAD_IDENTITY_USER_ROLE: Final = "roles/iam.workloadIdentityUser"
# Push (and pull) images in one repository (artifactregistry.repositories.uploadArtifacts).
ARTIFACT_REGISTRY_WRITER_ROLE: Final = "roles/artifactregistry.writer"
# resourcemanager.projects.get/list only (https://cloud.google.com/iam/docs/understanding-roles#browser).
BROWSER_ROLE: Final = "roles/browser"
# Names of a role and a resource type, not credentials (hence the noqa).
SECRET_ACCESSOR_ROLE: Final = "roles/secretmanager.secretAccessor"  # noqa: S105
SECRET_IAM_MEMBER_TYPE: Final = "gcp:secretmanager/secretIamMember:SecretIamMember"  # noqa: S105

# Operations (components.monitoring): what the deployer needs to declare them
# (https://cloud.google.com/monitoring/access-control, https://cloud.google.com/logging/docs/access-control).
MONITORING_ALERT_POLICY_EDITOR_ROLE: Final = "roles/monitoring.alertPolicyEditor"
MONITORING_DASHBOARD_EDITOR_ROLE: Final = "roles/monitoring.dashboardEditor"
MONITORING_CHANNEL_EDITOR_ROLE: Final = "roles/monitoring.notificationChannelEditor"
# The dead-letter bucket: the runtime account adds letters (create only: no read, no
# replace, no delete); readers and operators read them (STORAGE_OBJECT_VIEWER_ROLE).
STORAGE_OBJECT_CREATOR_ROLE: Final = "roles/storage.objectCreator"
# Writes spans (cloudtrace.traces.patch, telemetry.traces.write), reads none
# (https://cloud.google.com/trace/docs/iam): the runtime account's when trace_export is on.
CLOUD_TRACE_AGENT_ROLE: Final = "roles/cloudtrace.agent"

# --- principals that mean "anyone" (cloud.google.com/iam/docs/principals-overview) --------
PUBLIC_PRINCIPALS: Final = ("allUsers", "allAuthenticatedUsers")
SERVICE_ACCOUNT_MEMBER_PREFIX: Final = "serviceAccount:"


# The non-authoritative IAM grants the program makes (one member, one role each).
IAM_MEMBER_TYPES: Final = (
    QUEUE_IAM_MEMBER_TYPE,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    PROJECT_IAM_MEMBER_TYPE,
    SECRET_IAM_MEMBER_TYPE,
    BUCKET_IAM_MEMBER_TYPE,
)
