"""Network services the trust side of a federation runs: the CA's OCSP responder.

These are thin aiohttp shells around :mod:`trust`'s pure functions and stores; the
timestamping authority lives next to them.
"""

__all__: list[str] = []
