"""cap source: an imported CAP message's sender and references are kept

Imports are deduplicated on (sender, identifier), as CAP identifies a message, and an
imported Update or Cancel exports again with the references it came with.

Also the merge point of the two revisions made on 0002 at the same time (the audit
log's triggers, and the officers' session epoch): one head again.

Revision ID: 0004
Revises: 0003, 0003_session_epoch
Create Date: 2026-11-25 13:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = ('0003', '0003_session_epoch')
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('cap_sender', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('cap_references', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.drop_column('cap_references')
        batch.drop_column('cap_sender')
