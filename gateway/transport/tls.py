"""TLS contexts for the mutual-TLS transport between security servers.

Both sides present their *auth* certificate and require the peer's, chained to a CA
approved in global configuration.  The CA alone does not say *which* security server
is on the other end, so:

* the server side maps the client's certificate to a security server by its
  fingerprint (done per request by the provider pipeline);
* the client side pins the fingerprints global configuration registers for the peer it
  means to reach, *inside the handshake*: a custom ``SSLObject`` class checks the
  peer's certificate before a single byte of the message is sent.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = ["server_context", "pinned_client_context", "peer_certificate_der"]

_CIPHER_FLOOR = ssl.TLSVersion.TLSv1_2


def _ca_pem(cas: Iterable[x509.Certificate]) -> str:
    return "".join(ca.public_bytes(Encoding.PEM).decode("ascii") for ca in cas)


def server_context(
    certificate: Path, key: Path, passphrase: bytes | None, cas: Iterable[x509.Certificate]
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _CIPHER_FLOOR
    ctx.load_cert_chain(str(certificate), str(key), password=passphrase)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=_ca_pem(cas))
    return ctx


def pinned_client_context(
    certificate: Path,
    key: Path,
    passphrase: bytes | None,
    cas: Iterable[x509.Certificate],
    peer_fingerprints: Iterable[str],
) -> ssl.SSLContext:
    """A client context that completes a handshake only with one of ``peer_fingerprints``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _CIPHER_FLOOR
    # Identity is the pinned fingerprint, not a host name: every security server in a
    # loopback federation answers on 127.0.0.1.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=_ca_pem(cas))
    ctx.load_cert_chain(str(certificate), str(key), password=passphrase)
    ctx.sslobject_class = _pinning_sslobject(frozenset(fp.lower() for fp in peer_fingerprints))
    return ctx


def _pinning_sslobject(allowed: frozenset[str]) -> type[ssl.SSLObject]:
    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # raises SSLWantReadError until the handshake is done
            der = self.getpeercert(binary_form=True)
            seen = hashlib.sha256(der).hexdigest() if der else "none"
            if seen not in allowed:
                raise ssl.SSLCertVerificationError(
                    f"peer certificate {seen[:16]}... is not the one registered in global configuration"
                )

    return PinnedSSLObject


def peer_certificate_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)
