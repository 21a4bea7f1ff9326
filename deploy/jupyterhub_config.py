"""Example jupyterhub_config.py: JupyterHub with Prod Discovery and per-user Vault identity.

Before starting the hub, configure Vault/OpenBao once (as an operator with a privileged token):

    VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=... \
    jupyter prod-discovery hub setup-vault --key-file /srv/jupyterhub/prod-discovery-jwt-key.pem \
        --group analysts=database/creds/analysts-ro --group fraud=database/creds/fraud-pii
    vault token create -policy=prod-discovery-hub -period=24h   # -> PROD_DISCOVERY_HUB_VAULT_TOKEN

Everything site-specific is read from the environment below. Single-user servers get no Vault
secret at all: they log in with a JWT the hub's service signs for their user (5 minutes, audience
bound) and hand every kernel its own short-lived credentials.
"""

import os

from jupyter_prod_discovery.hub.config import configure_hub

c = get_config()  # noqa: F821 (provided by JupyterHub)

VAULT_ADDR = os.environ["VAULT_ADDR"]

# Any authenticator works; groups come from the hub (load_groups, or the authenticator's
# manage_groups for OAuth/LDAP), and select both the credential profiles and the Vault policies.
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.Authenticator.admin_users = {"platform-admin"}

c.JupyterHub.spawner_class = "simple"  # LocalProcessSpawner / SystemdSpawner / KubeSpawner

configure_hub(
    c,
    vault_addr=VAULT_ADDR,
    service_port=8181,
    key_file="/srv/jupyterhub/prod-discovery-jwt-key.pem",  # created 0600 on first start
    hub_vault_token=os.environ.get("PROD_DISCOVERY_HUB_VAULT_TOKEN", ""),  # enables revoke-on-stop
)

# Cluster-wide settings of every single-user server: where the audit trail goes, its MAC key,
# the credential profiles (selected by hub group) and the denial for users in no group.
c.Spawner.environment.update(
    {
        "PROD_DISCOVERY_AUDIT_DSN": os.environ["PROD_DISCOVERY_AUDIT_DSN"],
        "PROD_DISCOVERY_AUDIT_KEY": os.environ["PROD_DISCOVERY_AUDIT_KEY"],
        "JUPYTER_CONFIG_PATH": "/etc/prod-discovery",  # holds jupyter_server_config.json below
    }
)
# /etc/prod-discovery/jupyter_server_config.json:
# {
#   "AuditTrail": {"sink_classes": ["jupyter_prod_discovery.audit.sinks.PostgresSink"],
#                  "fail_closed": true, "compliance_groups": ["compliance"]},
#   "PostgresSink": {"create_tables": false},
#   "CredentialBroker": {
#     "deny_without_profile": true,
#     "profiles": [
#       {"name": "warehouse-ro", "type": "database", "role": "analysts-ro",
#        "groups": ["analysts"], "env": {"PGUSER": "{username}", "PGPASSWORD": "{password}"}},
#       {"name": "fraud-pii", "type": "database", "role": "fraud-pii",
#        "groups": ["fraud"], "env": {"PGUSER": "{username}", "PGPASSWORD": "{password}"}}
#     ]
#   }
# }
