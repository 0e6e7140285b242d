"""The executor: claim → execute → heartbeat → complete loop (no SQL) and the handler registry."""
