"""The one-command demo: an embedded OpenBao dev server, a seeded sample database and JupyterLab."""
