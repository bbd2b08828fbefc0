"""The HTTP API service: every route of the contract."""
