"""X-Road REST r1: parse an information system's request, answer it, call a provider's backend."""
