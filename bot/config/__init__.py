"""Settings: each one declared once, read from the environment and `.env`, validated with errors that name the fix."""
