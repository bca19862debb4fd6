"""X-Road SOAP message protocol 4.0, client side: parse requests, render answers and faults.

:mod:`~adapters.soap.safexml` parses XML with DTDs refused and work bounded;
:mod:`~adapters.soap.mime` takes ``text/xml``, SOAP-with-attachments and MTOM bodies apart;
:mod:`~adapters.soap.envelope` reads and validates the X-Road headers;
:mod:`~adapters.soap.inbound` turns a client's request into a :class:`SoapRequest` and a
core message; :mod:`~adapters.soap.outbound` writes answers and faults;
:mod:`~adapters.soap.response` reads a provider's answer and checks it against the request;
:mod:`~adapters.soap.backend` calls a provider's SOAP backend with the client's bytes.
:mod:`~adapters.soap.xsd` serves X-Road's bundled schemas; :mod:`~adapters.soap.wsdl` reads
a provider's WSDL offline (with zeep, through :mod:`~adapters.soap.offline`, both loaded only
then) and masks its endpoint addresses; :mod:`~adapters.soap.headers` writes a request's
X-Road headers; :mod:`~adapters.soap.metadata` renders listClients and the SOAP metadata
services (listMethods, allowedMethods, getWsdl).  :mod:`~adapters.soap.client` is the
zeep-based client for information systems; a security server never imports it.
"""
