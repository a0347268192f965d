"""board changes: a recipient's last change is kept, so the live board sends only changes

The board's producer asks for the recipients, deliveries and replies of an alert changed
since it last looked; each of those reads is an index range, not the whole alert. Its zone
figures (counts by zone, tier and state; whom to call next) read one covering index.

Revision ID: 0005_board_changes
Revises: 0004
Create Date: 2026-11-25 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005_board_changes'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recipients') as batch:
        batch.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE recipients SET updated_at = COALESCE(acknowledged_at, notified_at, "
               "created_at)")
    with op.batch_alter_table('recipients') as batch:
        batch.alter_column('updated_at', existing_type=sa.DateTime(timezone=True),
                           nullable=False)
    op.create_index('ix_recipients_alert_updated', 'recipients', ['alert_id', 'updated_at'])
    op.create_index('ix_recipients_alert_zone', 'recipients',
                    ['alert_id', 'zone_id', 'tier', 'state'])
    op.create_index('ix_deliveries_alert_updated', 'deliveries', ['alert_id', 'updated_at'])
    op.create_index('ix_responses_alert_created', 'responses', ['alert_id', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_responses_alert_created', table_name='responses')
    op.drop_index('ix_deliveries_alert_updated', table_name='deliveries')
    op.drop_index('ix_recipients_alert_zone', table_name='recipients')
    op.drop_index('ix_recipients_alert_updated', table_name='recipients')
    with op.batch_alter_table('recipients') as batch:
        batch.drop_column('updated_at')
