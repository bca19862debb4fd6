"""Which information system may act for which client subsystem (step 2 of the consumer pipeline).

Each client subsystem says how its information systems connect (:class:`ConnectionType`):
``http`` takes plain HTTP and HTTPS, ``https`` only HTTPS, ``https-mtls`` (the default for
new clients) only HTTPS with a TLS client certificate registered for that subsystem.  The
client listener tells the pipeline what it saw of the connection in a
:class:`ClientConnection`; :func:`authenticate_client` decides.  Refusals are
``Client.SslAuthenticationFailed``, X-Road's code for them, with a message saying what
was missing.

On top of that, whatever the connection type, a request may carry a client token of
this server (``Authorization: Bearer``, see :mod:`trust.clienttokens`), and a client with
``token_required`` must: a token that is there must verify and be bound to exactly the
client the request acts for.  Those refusals are ``Client.InvalidClientToken`` (HTTP
401).  Which bearer tokens are this server's, and that they are not forwarded, is the
client listener's business (:mod:`gateway.server`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import SecurityServerId
from gateway.serverconf.model import ClientEntry, ConnectionType
from trust.clienttokens import ClientTokenInvalid, verify_client_token

__all__ = ["ClientConnection", "authenticate_client"]


@dataclass(frozen=True)
class ClientConnection:
    """What the client listener knows about how a request arrived.

    ``tls``: over HTTPS; ``certificate_fingerprint``: SHA-256 (lower-case hex of the DER)
    of the client certificate the TLS handshake authenticated, if any; ``token``: the
    bearer token the request carried for this server, if any.
    """

    tls: bool = False
    certificate_fingerprint: str | None = None
    token: str | None = None


def authenticate_client(
    client: ClientEntry,
    connection: ClientConnection,
    *,
    token_key: ec.EllipticCurvePublicKey,
    server_id: SecurityServerId,
    now: dt.datetime,
) -> None:
    """Refuse (``XwegError``) a request for ``client`` that arrived in a way ``client`` does not allow.

    ``token_key``: this server's client-token key, ``server_id`` this server, ``now`` the
    time of the request, for checking a client token.
    """
    # (2a) connection type and (2b) client certificate, then (2c) the client token
    _check_connection(client, connection)
    _check_token(client, connection, token_key, server_id, now)


def _check_token(
    client: ClientEntry,
    connection: ClientConnection,
    token_key: ec.EllipticCurvePublicKey,
    server_id: SecurityServerId,
    now: dt.datetime,
) -> None:
    name = client.id.slash()
    if connection.token is None:
        if client.token_required:
            raise XwegError(
                ErrorCode.INVALID_CLIENT_TOKEN,
                f"client {name} requires a client token of this security server (Authorization: Bearer)",
                Origin.CLIENT,
            )
        return
    try:
        verify_client_token(connection.token, token_key, issuer=server_id, client=client.id, now=now)
    except ClientTokenInvalid as exc:
        raise XwegError(
            ErrorCode.INVALID_CLIENT_TOKEN, f"{exc} (request for client {name})", Origin.CLIENT
        ) from exc


def _check_connection(client: ClientEntry, connection: ClientConnection) -> None:
    name = client.id.slash()
    if client.connection is ConnectionType.HTTP:
        return
    if not connection.tls:
        raise XwegError(
            ErrorCode.SSL_AUTHENTICATION_FAILED,
            f"client {name} must connect over HTTPS ({client.connection.value}), not plain HTTP",
            Origin.CLIENT,
        )
    if client.connection is ConnectionType.HTTPS:
        return
    if connection.certificate_fingerprint is None:
        raise XwegError(
            ErrorCode.SSL_AUTHENTICATION_FAILED,
            f"client {name} must present a TLS client certificate registered for it",
            Origin.CLIENT,
        )
    if connection.certificate_fingerprint not in client.certificate_fingerprints:
        raise XwegError(
            ErrorCode.SSL_AUTHENTICATION_FAILED,
            f"the TLS client certificate (SHA-256 {connection.certificate_fingerprint}) "
            f"is not registered for client {name}",
            Origin.CLIENT,
        )
