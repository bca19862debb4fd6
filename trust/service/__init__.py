"""Network services the trust side of a federation runs: the CA's OCSP responder.

These are thin aiohttp shells around :mod:`trust`'s pure functions and stores; the
timestamping authority lives next to them.  The aiohttp plumbing the registry and the
security servers share lives here too: running a service (:mod:`trust.service.runner`)
and the frame of their OpenAPI-described JSON APIs (:mod:`trust.service.jsonapi`).
"""

__all__: list[str] = []
