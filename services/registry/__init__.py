"""The registry process: the services table, host aggregates and zones, and the Host API."""
