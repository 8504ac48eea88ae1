"""The HTTP side of `kilroy run`: /healthz, /metrics and the operator dashboard.

Everything here is built from plain callables and typed services, so the app runs (and is tested) without Discord:
`bot/services.py` wires it to the live services and the bot's gateway state; tests supply fakes.
"""
