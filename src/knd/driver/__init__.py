"""The engine: claim preparation into persisted plans, the state store, claim status writing."""
