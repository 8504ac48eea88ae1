"""Members' data: forget-me, the scrub of adapters' metadata, retention. The cogs and the CLI only call it."""
