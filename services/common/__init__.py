"""The service kit: bootstrap, interceptors, settings, storage, logging, metrics. No business rules."""
