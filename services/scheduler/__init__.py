"""berth-scheduler: HostState in Redis, Nova's filters and weighers, atomic claims."""
