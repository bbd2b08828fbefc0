"""Delivery channels: one module per notification type, each a pure part plus one send call."""
