"""Short-lived Vault/OpenBao credentials: Vault client, profiles, broker, kernel provisioner."""
