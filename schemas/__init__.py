"""Wire types of CodeCourier: API bodies and topic payloads, as msgspec Structs."""
