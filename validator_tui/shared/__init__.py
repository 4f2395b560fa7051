"""What the engine and the console both hold: the records (jobs, challenges, VMs, hosts,
events, outbox rows), the header and the change feed's `StateDelta`, and the versioned tables
behind both change feeds. It imports nothing of either side."""
