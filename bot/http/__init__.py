"""The HTTP side of `kilroy run`: /healthz, /metrics and the operator dashboard.

Everything here is built from plain callables and services, so the app runs (and is tested) without Discord:
`bot/app/bot.py` supplies the gateway state; tests supply fakes.
"""
