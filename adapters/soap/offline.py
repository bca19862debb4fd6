"""A zeep transport that serves X-Road's bundled schemas and fetches nothing.

Apart from :mod:`adapters.soap.wsdl` because subclassing zeep's ``Transport`` loads zeep
(and ``requests``); :mod:`adapters.soap.wsdl` imports this module only when it reads a
WSDL, so that a security server that never does so does not hold them in memory.
"""

from __future__ import annotations

from typing import Any, NoReturn

from zeep.transports import Transport

from adapters.soap.wsdl import OfflineTransportError
from adapters.soap.xsd import bundled_name, schema_bytes

__all__ = ["OfflineTransport"]


class OfflineTransport(Transport):
    """A zeep transport that serves X-Road's bundled schemas and nothing else.

    ``load`` answers only locations :func:`adapters.soap.xsd.bundled_name` knows; any other
    URL, any path and any attempt to send raises :class:`OfflineTransportError`.  Nothing
    is ever read from the network or the file system.
    """

    def __init__(self) -> None:
        super().__init__(cache=None)  # type: ignore[no-untyped-call]  # zeep leaves it unannotated

    def load(self, url: str) -> bytes:
        name = bundled_name(url) if isinstance(url, str) else None
        if name is None:
            raise OfflineTransportError(f"{str(url)[:200]!r} is not one of X-Road's bundled schemas")
        return schema_bytes(name)

    def _load_remote_data(self, url: str) -> NoReturn:
        raise OfflineTransportError(f"fetching {str(url)[:200]!r} is not allowed")

    def get(self, address: str, params: Any, headers: Any) -> NoReturn:
        raise OfflineTransportError("this transport sends nothing")

    def post(self, address: str, message: Any, headers: Any) -> NoReturn:
        raise OfflineTransportError("this transport sends nothing")

    def post_xml(self, address: str, envelope: Any, headers: Any) -> NoReturn:
        raise OfflineTransportError("this transport sends nothing")
