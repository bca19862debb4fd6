"""The registry's first schema: members, servers, groups, CAs, TSAs, service catalogue, settings.

Revision ID: 0001
Revises:
Create Date: 2025-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True)


def upgrade() -> None:
    """Create every table of revision 0001."""
    op.create_table(
        "settings",
        _id(),
        sa.Column("instance", sa.String(255), nullable=False),
        sa.Column("ocsp_freshness_s", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_settings"),
    )
    op.create_table(
        "member_classes",
        _id(),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_member_classes"),
        sa.UniqueConstraint("code", name="uq_member_classes_code"),
    )
    op.create_table(
        "members",
        _id(),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.ForeignKeyConstraint(["class_id"], ["member_classes.id"], name="fk_members_class_id"),
        sa.UniqueConstraint("class_id", "code", name="uq_members_class_id_code"),
    )
    op.create_table(
        "subsystems",
        _id(),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subsystems"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_subsystems_member_id"),
        sa.UniqueConstraint("member_id", "code", name="uq_subsystems_member_id_code"),
    )
    op.create_table(
        "security_servers",
        _id(),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("maintenance_mode", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_servers"),
        sa.ForeignKeyConstraint(["owner_id"], ["members.id"], name="fk_security_servers_owner_id"),
        sa.UniqueConstraint("owner_id", "code", name="uq_security_servers_owner_id_code"),
    )
    op.create_table(
        "auth_certificates",
        _id(),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("pem", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_auth_certificates"),
        sa.ForeignKeyConstraint(
            ["server_id"], ["security_servers.id"], name="fk_auth_certificates_server_id"
        ),
        sa.UniqueConstraint("fingerprint", name="uq_auth_certificates_fingerprint"),
    )
    op.create_table(
        "server_clients",
        _id(),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_server_clients"),
        sa.ForeignKeyConstraint(["server_id"], ["security_servers.id"], name="fk_server_clients_server_id"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_server_clients_member_id"),
        sa.ForeignKeyConstraint(["subsystem_id"], ["subsystems.id"], name="fk_server_clients_subsystem_id"),
    )
    op.create_table(
        "global_groups",
        _id(),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_global_groups"),
        sa.UniqueConstraint("code", name="uq_global_groups_code"),
    )
    op.create_table(
        "group_members",
        _id(),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_group_members"),
        sa.ForeignKeyConstraint(["group_id"], ["global_groups.id"], name="fk_group_members_group_id"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_group_members_member_id"),
        sa.ForeignKeyConstraint(["subsystem_id"], ["subsystems.id"], name="fk_group_members_subsystem_id"),
    )
    op.create_table(
        "approved_cas",
        _id(),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("intermediates_pem", sa.JSON(), nullable=False),
        sa.Column("ocsp_url", sa.String(2048), nullable=True),
        sa.Column("ocsp_responders_pem", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approved_cas"),
        sa.UniqueConstraint("fingerprint", name="uq_approved_cas_fingerprint"),
    )
    op.create_table(
        "approved_tsas",
        _id(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approved_tsas"),
    )
    op.create_table(
        "services",
        _id(),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("standard", sa.Text(), nullable=False),
        sa.Column("authorities", sa.JSON(), nullable=False),
        sa.Column("area", sa.String(12), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_services"),
        sa.ForeignKeyConstraint(["provider_id"], ["subsystems.id"], name="fk_services_provider_id"),
        sa.UniqueConstraint("provider_id", "code", "version", name="uq_services_provider_id_code_version"),
    )


def downgrade() -> None:
    """Drop every table of revision 0001, dependants first."""
    for table in (
        "services",
        "approved_tsas",
        "approved_cas",
        "group_members",
        "global_groups",
        "server_clients",
        "auth_certificates",
        "security_servers",
        "subsystems",
        "members",
        "member_classes",
        "settings",
    ):
        op.drop_table(table)
