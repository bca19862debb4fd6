"""Information-system-facing protocols (X-Road REST r1, SOAP 4.0): parse requests, call backends."""
