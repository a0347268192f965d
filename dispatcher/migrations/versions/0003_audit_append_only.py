"""audit log append-only in the database: UPDATE and DELETE on audit_log fail

The ORM already refuses to flush an edited or deleted AuditEvent; these triggers make
the database itself refuse, so neither a raw SQL statement nor a script bypasses it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:00:00
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

#: The message both databases raise; tests and the CLI look for it.
MESSAGE = "audit_log is append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$ LANGUAGE plpgsql""")
        # FOR EACH STATEMENT also covers an UPDATE or DELETE matching no row;
        # TRUNCATE has its own event.
        op.execute("""
            CREATE TRIGGER audit_log_append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"""
            CREATE TRIGGER audit_log_no_{verb.lower()}
            BEFORE {verb} ON audit_log
            BEGIN
                SELECT RAISE(ABORT, '{MESSAGE}: {verb} refused');
            END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER audit_log_no_{verb}")
