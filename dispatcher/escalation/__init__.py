"""Escalation: policies frozen on alerts, deadlines in the database, and the engine firing them.

`policy` says what should happen when a tier stays silent; `engine` claims due
deadline rows (leases, SKIP LOCKED on PostgreSQL) and acts on them.
"""
