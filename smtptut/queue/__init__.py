"""The durable delivery queue: a store on disk, a retry schedule, DSNs and the runner."""
