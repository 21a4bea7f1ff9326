"""Export of notebooks into signed, promotable pipeline job bundles."""
