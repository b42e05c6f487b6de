"""One module per Compute API resource; each exports ROUTES (path, endpoint, methods)."""
