"""The placement store: HostState and claims in Redis, changed only by atomic Lua scripts."""
