"""delivery indexes: two fewer entries written for each of an alert's deliveries

`ix_deliveries_alert` (alert_id) is the first column of `ix_deliveries_alert_updated`
(alert_id, updated_at), which answers every read by alert as well; it is dropped. A
delivery's provider id is empty until the provider answers, and only a set one is ever
looked up (a receipt names it): its index keeps only the set ones.

Revision ID: 0007_delivery_indexes
Revises: 0006_channels
Create Date: 2026-11-25 21:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007_delivery_indexes'
down_revision = '0006_channels'
branch_labels = None
depends_on = None

SET_PROVIDER_ID = sa.text("provider_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index('ix_deliveries_alert', table_name='deliveries')
    op.drop_index('ix_deliveries_provider_id', table_name='deliveries')
    op.create_index('ix_deliveries_provider_id', 'deliveries', ['provider_id'],
                    sqlite_where=SET_PROVIDER_ID, postgresql_where=SET_PROVIDER_ID)


def downgrade() -> None:
    op.drop_index('ix_deliveries_provider_id', table_name='deliveries')
    op.create_index('ix_deliveries_provider_id', 'deliveries', ['provider_id'])
    op.create_index('ix_deliveries_alert', 'deliveries', ['alert_id'])
