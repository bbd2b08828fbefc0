"""CodeCourier services: api, logsink, alerts, dispatcher and the all-in-one runner."""
