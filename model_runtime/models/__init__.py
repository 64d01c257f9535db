"""Body, face and merged full-body models, the bridge, official-file loaders."""
