"""The command line and the local federation runner."""
