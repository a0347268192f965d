"""membership index by zone and tier: a zone's members in escalation order

`targeting.first_reachable_tier` reads a zone's memberships in (tier, id) order a page
at a time; with an index on the zone alone, each page sorted the whole zone first
(6,667 memberships a look in a 100,000-volunteer alert to 15 zones, on both
databases). `ix_memberships_zone_tier` (zone_id, tier, id) gives them in that order,
and answers every read by zone, so `ix_memberships_zone_id` goes: one index entry per
membership, as before.

Revision ID: 0008_membership_zone_tier
Revises: 0007_delivery_indexes
Create Date: 2026-11-26 12:00:00
"""
from alembic import op

revision = '0008_membership_zone_tier'
down_revision = '0007_delivery_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_memberships_zone_tier', 'memberships', ['zone_id', 'tier', 'id'])
    op.drop_index('ix_memberships_zone_id', table_name='memberships')


def downgrade() -> None:
    op.create_index('ix_memberships_zone_id', 'memberships', ['zone_id'])
    op.drop_index('ix_memberships_zone_tier', table_name='memberships')
