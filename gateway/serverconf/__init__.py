"""The security server's own configuration: clients, services, endpoints, access rights, local groups."""
