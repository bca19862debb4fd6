"""Management-API tokens: role tokens (:mod:`trust.tokens`) a security server issues itself.

Issuer: the security server's id (slash form); audience: :data:`AUDIENCE`; the role one
of :data:`ROLES`.  They are signed with the server's management-token key
(``management-token.key`` in its data folder, :mod:`gateway.tokens`), so no other
server and no other kind of token of this server (auditor, client) passes for one.
What each role may do is the document's ``x-roles`` (:mod:`gateway.management.openapi`).
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric import ec

from core.identifiers import SecurityServerId
from trust.tokens import DEFAULT_TTL_S, RoleIdentity, issue_role_token, verify_role_token

__all__ = [
    "AUDIENCE",
    "OBSERVER",
    "REGISTRATION_OFFICER",
    "ROLES",
    "SECURITY_OFFICER",
    "SERVICE_ADMIN",
    "issue_management_token",
    "verify_management_token",
]

SECURITY_OFFICER = "security-officer"  # clients, their connection and certificates, local groups
SERVICE_ADMIN = "service-admin"  # services, endpoints, access rights, local groups
REGISTRATION_OFFICER = "registration-officer"  # asks the registry to register client subsystems
OBSERVER = "observer"  # reads
ROLES = (SECURITY_OFFICER, SERVICE_ADMIN, REGISTRATION_OFFICER, OBSERVER)
AUDIENCE = "xweg-management-api"


def issue_management_token(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    server_id: SecurityServerId,
    subject: str,
    role: str,
    now: dt.datetime,
    ttl_s: int = DEFAULT_TTL_S,
) -> str:
    """A token for ``subject`` in ``role`` on the management API of ``server_id``."""
    return issue_role_token(
        private_key,
        issuer=server_id.slash(),
        audience=AUDIENCE,
        roles=ROLES,
        subject=subject,
        role=role,
        now=now,
        ttl_s=ttl_s,
    )


def verify_management_token(
    token: str, public_key: ec.EllipticCurvePublicKey, *, server_id: SecurityServerId, now: dt.datetime
) -> RoleIdentity:
    """Who a valid token speaks for; :class:`trust.tokens.TokenInvalid` otherwise."""
    return verify_role_token(
        token, public_key, issuer=server_id.slash(), audience=AUDIENCE, roles=ROLES, now=now
    )
