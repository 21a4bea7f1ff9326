"""Source of the run-time credential fetch that generated jobs embed (a string template).

The job logs in to Vault with its own identity (``VAULT_TOKEN`` when the platform already put
one there, e.g. a Vault agent; otherwise the Kubernetes auth method with ``VAULT_ROLE`` and the
pod's service-account token), reads ``<mount>/creds/<role>`` for each reference in the manifest
and exposes each field as ``PD_<PROFILE>_<FIELD>`` to the papermill kernel only.
"""

from __future__ import annotations

FETCH_FUNCTION = '''
def fetch_credentials(references):
    """Read each Vault reference at run time; return {env var: value} for the kernel only."""
    import os

    if not references:
        return {}
    import hvac

    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ.get("VAULT_TOKEN"))
    if not os.environ.get("VAULT_TOKEN"):
        jwt_path = os.environ.get(
            "VAULT_JWT_PATH", "/var/run/secrets/kubernetes.io/serviceaccount/token"
        )
        with open(jwt_path) as f:
            client.auth.kubernetes.login(
                role=os.environ["VAULT_ROLE"],
                jwt=f.read().strip(),
                mount_point=os.environ.get("VAULT_AUTH_MOUNT", "kubernetes"),
            )
    env = {}
    for ref in references:
        path = ref.get("path") or "{}/creds/{}".format(ref["mount"], ref["role"])
        data = (client.read(path) or {}).get("data") or {}
        for key, value in data.items():
            name = "PD_" + "".join(
                c if c.isalnum() else "_" for c in "{}_{}".format(ref["profile"], key)
            ).upper()
            env[name] = str(value)
    return env


class credentials_env:
    """Put the fetched credentials into os.environ for the kernel papermill starts, then remove
    them, so they never outlive the run in a long-lived worker process."""

    def __init__(self, references):
        self.references = references
        self.saved = {}

    def __enter__(self):
        import os

        for name, value in fetch_credentials(self.references).items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = value
        return self

    def __exit__(self, *exc):
        import os

        for name, old in self.saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
        return False
'''
