"""Example jupyterhub_config.py: JupyterHub with Prod Discovery's trusted service.

Topology: the trusted service (``jupyter prod-discovery service``) runs as a hub-managed service
under an OS user of its own; it alone holds the Vault token, the audit store's DSN and the
audit signing key. Single-user servers (and their kernels and terminals) hold only their own
hub API token: they ask the service for kernel credentials and ship audit events to it.

Before starting the hub, once, as a Vault operator (never with a root token in a file):

    jupyter prod-discovery service-policy --config /etc/prod-discovery/service.json \
        > prod-discovery-service.hcl
    vault policy write prod-discovery-service prod-discovery-service.hcl
    vault token create -policy=prod-discovery-service -period=24h -orphan
        # -> PROD_DISCOVERY_SERVICE_VAULT_TOKEN (renewed by the service while it runs)

and create the audit database and its owner (the service creates its tables), reachable only
from the hub's host with a password (PROD_DISCOVERY_SERVICE_DSN). Compliance verifies the trail
with the public key alone: ``jupyter prod-discovery audit public-key --service URL -o key.pem``.
"""

import os

from jupyter_prod_discovery.hub.config import configure_trusted_service

c = get_config()  # noqa: F821 (provided by JupyterHub)

# Any authenticator works; groups come from the hub (load_groups, or the authenticator's
# manage_groups for OAuth/LDAP) and select the credential profiles in the service's config.
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.Authenticator.admin_users = {"platform-admin"}

# Every user's server runs as that user's OS account (or in its own pod with KubeSpawner).
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"

configure_trusted_service(
    c,
    port=8182,
    dsn=os.environ["PROD_DISCOVERY_SERVICE_DSN"],
    vault_addr=os.environ["VAULT_ADDR"],
    vault_token=os.environ["PROD_DISCOVERY_SERVICE_VAULT_TOKEN"],
    # {"CredentialBroker": {"deny_without_profile": true, "profiles": [
    #    {"name": "warehouse-ro", "type": "database", "role": "analysts-ro",
    #     "groups": ["analysts"], "env": {"PGUSER": "{username}", "PGPASSWORD": "{password}"}},
    #    {"name": "fraud-pii", "type": "database", "role": "fraud-pii",
    #     "groups": ["fraud"], "env": {"PGUSER": "{username}", "PGPASSWORD": "{password}"}}]}}
    config_file="/etc/prod-discovery/service.json",
    state_dir="/var/lib/prod-discovery",  # 0700, owned by the service's user: signing key
    user="prod-discovery",  # its own OS user: no single-user server can read its memory
)

# What every single-user server needs besides the service's address (set above): nothing
# secret. Fail closed when the service cannot take audit events.
c.Spawner.environment.update({"JUPYTER_CONFIG_PATH": "/etc/prod-discovery/singleuser"})
# /etc/prod-discovery/singleuser/jupyter_server_config.json:
# {"AuditTrail": {"fail_closed": true}}
