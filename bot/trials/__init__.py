"""Live A/B trials: the sequential test (pure) and the service that runs one against the serving adapter."""
