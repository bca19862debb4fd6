"""The configuration client: fetch, verify, persist and swap global configuration."""
