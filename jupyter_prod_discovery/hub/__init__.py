"""JupyterHub deployment: per-user Vault identity through short-lived, hub-signed JWTs.

- :mod:`.issuer`: the signing key, the JWTs (claims: user, groups, server name, admin; short
  ``exp``; audience bound) and the JWKS that Vault/OpenBao verifies them with.
- :mod:`.service`: the JupyterHub managed service that hands a fresh JWT to a single-user server
  presenting its own ``$JUPYTERHUB_API_TOKEN`` (and publishes the JWKS).
- :mod:`.singleuser`: the single-user side: fetch a JWT from the service for the JWT login of
  ``VaultClient`` (``c.VaultClient.jwt_provider``).
- :mod:`.vault_setup`: ``jupyter prod-discovery hub setup-vault`` configures Vault/OpenBao for it.
- :mod:`.config`: ``configure_hub(c, ...)`` for ``jupyterhub_config.py``.
"""
