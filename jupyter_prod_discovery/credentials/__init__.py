"""Short-lived Vault/OpenBao credentials: the Vault client, profiles, broker and kernel provisioner."""
