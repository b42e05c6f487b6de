"""berth-compute: the agent on each compute host (virt driver, ResourceTrackers, snapshots)."""
