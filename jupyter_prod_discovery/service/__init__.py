"""The trusted service: what must hold against the data scientist, outside their reach.

Single-user servers (and every kernel and terminal in them) run as the user's OS identity, so
nothing they hold is secret from the user. This service runs under its own OS user (a JupyterHub
service, its own pod, or ``jupyter prod-discovery service``): it issues, renews and revokes kernel
credentials with the only Vault token, seals and stores the audit trail with the only signing
key, and publishes the public key. Servers are clients (``service/client.py``) holding nothing
stronger than their user's own identity.
"""
