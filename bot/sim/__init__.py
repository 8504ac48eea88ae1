"""The offline simulation: audiences, the nights loop, A/B nights, plots."""
