"""The `berth` command: Nova-style service, host and aggregate commands, and `berth up`."""
