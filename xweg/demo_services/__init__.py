"""Demo SOAP services of the federation, with their service descriptions as package data.

* :mod:`xweg.demo_services.meldewesen` -- Stadt Bielefeld's residents' register after
  XMeld (``meldeauskunft``, ``rueckmeldung``), described by ``meldewesen.wsdl``.

They are started as ``xweg demo-backend KIND`` (see :mod:`xweg.backends`).
"""
