"""channels: a deadline may be a policy step (a later channel for the same tier)

An escalation policy's tier is a list of steps (e.g. SMS, WhatsApp and email at once,
a call after 5 minutes); each later step is a deadline row of kind `step`, and `step`
says which one. Empty for escalations and reminders, as before. An index on responses
answers "did this volunteer write on WhatsApp in the last 24 hours?" (the session that
allows free text) at every send.

Revision ID: 0006_channels
Revises: 0005_board_changes
Create Date: 2026-11-25 15:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_channels'
down_revision = '0005_board_changes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deadlines') as batch:
        batch.add_column(sa.Column('step', sa.Integer(), nullable=True))
    op.create_index('ix_responses_volunteer_channel', 'responses',
                    ['volunteer_id', 'channel', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_responses_volunteer_channel', table_name='responses')
    with op.batch_alter_table('deadlines') as batch:
        batch.drop_column('step')
