"""The security server: pipelines, mTLS transport, configuration client, message log."""
