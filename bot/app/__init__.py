"""The Discord face: KilroyBot (intents, setup, command sync, errors) and the checks the cogs share.

The cogs themselves live in the top-level cogs/ package."""
