"""The security server's management API: clients, services, access rights, local groups.

An OpenAPI-described JSON API (:mod:`gateway.management.openapi`, served at
``GET /openapi.json``) on its own HTTPS listener (``[management_listener]`` in the
configuration file), guarded by role tokens (:mod:`gateway.management.tokens`,
``xweg gateway token issue``).  Every change goes through the server configuration
store and is live at once (:mod:`gateway.management.api`).
"""
