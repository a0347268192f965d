"""Times as the dashboard shows them: in the post's time zone (`dispatcher.localtime`,
which the report shares)."""

from dispatcher.localtime import local_time

__all__ = ["local_time"]
