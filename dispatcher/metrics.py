"""What an operator's Prometheus scrapes at `GET /metrics`.

Two kinds of figures. What the database knows (deliveries by channel, provider and
state; provider errors by code; acknowledgements and time to acknowledge; escalations
and their lateness; the outbox and deadline backlogs) is read from the database at
each scrape, so every `aln serve` and `aln worker` agrees, however many there are.
What only a process knows (webhook requests and their latency, the channel's retries)
lives in `prometheus_client` metrics; with `PROMETHEUS_MULTIPROC_DIR` set, every
process's figures are added up, as prometheus_client's multiprocess mode does.
No label ever carries a name, a number or an address: only channels, states, codes
and routes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from dispatcher.db import db_now
from dispatcher.domain import DUTY_OFFICER_TIER, DeadlineKind, DeadlineState, DeliveryState
from dispatcher.models import Deadline, Delivery, Recipient
from dispatcher.runtime import Runtime

__all__ = ["BOARD_CPU", "CONTENT_TYPE_LATEST", "RequestMetrics", "render"]

#: Bucket bounds (seconds) of the time to acknowledge: a drill answers in minutes.
ACK_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
#: Bucket bounds (seconds) of an escalation's lateness past its deadline.
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
#: Outbox states still to be handed to a provider.
BACKLOG_STATES = (DeliveryState.PENDING, DeliveryState.SENDING)

#: The live boards' cost to this process (`web.board_hub`): the CPU time of the threads
#: that built their snapshots, looked for changes and encoded each change event.
BOARD_CPU = Counter(
    "aln_board_cpu_seconds", "CPU time spent building the live boards (snapshots, looks, "
    "change events)")
REQUESTS = Histogram(
    "aln_http_request_seconds", "Webhook, API and dashboard requests by route and status",
    ["route", "status"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class RequestMetrics:
    """ASGI middleware timing every request by its route's template (never its path,
    which may hold a token) and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(route=route, status=str(status)).observe(
                time.perf_counter() - started)


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time (the same for every process)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Any]:
        with self.rt.db.session() as session:
            yield from self._deliveries(session)
            yield from self._acks(session)
            yield from self._escalations(session)
        yield from self._spool()

    def _deliveries(self, session: Any) -> Iterable[Any]:
        by_state = CounterMetricFamily(
            "aln_deliveries", "Messages by channel, provider and state",
            labels=["channel", "provider", "state"])
        backlog = GaugeMetricFamily("aln_outbox_backlog",
                                    "Messages not yet handed to a provider, by channel",
                                    labels=["channel"])
        errors = CounterMetricFamily("aln_provider_errors",
                                     "Messages a provider refused or failed, by code",
                                     labels=["channel", "provider", "code"])
        backlog_by: dict[str, float] = {channel: 0 for channel in PROVIDER}
        for channel, state, count in session.execute(
                select(Delivery.channel, Delivery.state, func.count())
                .group_by(Delivery.channel, Delivery.state)):
            by_state.add_metric([channel, PROVIDER.get(channel, channel), str(state)], count)
            if state in BACKLOG_STATES:
                backlog_by[channel] = backlog_by.get(channel, 0) + count
        for channel, count in backlog_by.items():
            backlog.add_metric([channel], count)
        for channel, code, count in session.execute(
                select(Delivery.channel, Delivery.error_code, func.count())
                .where(Delivery.error_code.is_not(None))
                .group_by(Delivery.channel, Delivery.error_code)):
            errors.add_metric([channel, PROVIDER.get(channel, channel), str(code)], count)
        retried = session.scalar(select(func.count()).select_from(Delivery)
                                 .where(Delivery.attempts > 1)) or 0
        requeued = CounterMetricFamily("aln_deliveries_claimed_again",
                                       "Messages the outbox had to try more than once")
        requeued.add_metric([], retried)
        return [by_state, backlog, errors, requeued]

    def _acks(self, session: Any) -> Iterable[Any]:
        seconds = func.coalesce(_epoch(session, Recipient.acknowledged_at)
                                - _epoch(session, Recipient.notified_at), 0)
        histogram, _ = _histogram(
            session, "aln_time_to_acknowledge_seconds",
            "From a volunteer's first accepted message to their acknowledgement",
            seconds, ACK_BUCKETS, Recipient.acknowledged_at.is_not(None),
            Recipient.notified_at.is_not(None), Recipient.tier != DUTY_OFFICER_TIER)
        acks = CounterMetricFamily("aln_acknowledgements", "Volunteers who acknowledged")
        acks.add_metric([], session.scalar(select(func.count()).select_from(Recipient).where(
            Recipient.acknowledged_at.is_not(None))) or 0)
        return [acks, histogram]

    def _escalations(self, session: Any) -> Iterable[Any]:
        lateness = Deadline.lateness_seconds
        histogram, total = _histogram(
            session, "aln_escalation_lateness_seconds",
            "How late after its deadline an escalation fired", lateness, LATENESS_BUCKETS,
            Deadline.kind == DeadlineKind.ESCALATE.value, Deadline.state == DeadlineState.DONE,
            lateness.is_not(None))
        fired = CounterMetricFamily("aln_escalations", "Escalation deadlines fired")
        fired.add_metric([], total)
        backlog = GaugeMetricFamily("aln_deadline_backlog",
                                    "Deadlines pending or claimed, and how many are due now",
                                    labels=["due"])
        pending = session.scalar(select(func.count()).select_from(Deadline).where(
            Deadline.state.in_([DeadlineState.PENDING, DeadlineState.CLAIMED]))) or 0
        due = session.scalar(select(func.count()).select_from(Deadline).where(
            Deadline.state == DeadlineState.PENDING, Deadline.due_at <= db_now(session))) or 0
        backlog.add_metric(["all"], pending)
        backlog.add_metric(["due"], due)
        return [fired, histogram, backlog]

    def _spool(self) -> Iterable[Any]:
        directory = self.rt.settings.spool_path()
        depth = GaugeMetricFamily("aln_spool_depth",
                                  "Webhooks kept on disk while the database could not take them")
        depth.add_metric([], len(list(directory.glob("*.req"))) if directory.is_dir() else 0)
        return [depth]


#: The provider behind each channel, for the `provider` label.
PROVIDER = {"sms": "twilio", "email": "sendgrid"}


def _histogram(session: Any, name: str, documentation: str, value: Any,
               bounds: Sequence[float], *where: Any) -> tuple[HistogramMetricFamily, int]:
    """A histogram of `value` over the rows matching `where`, counted by the database in
    one query (cumulative buckets, sum, count); also the count."""
    buckets = [func.sum(case((value <= bound, 1), else_=0)) for bound in bounds]
    total, value_sum, *cumulative = session.execute(
        select(func.count(), func.coalesce(func.sum(value), 0), *buckets).where(*where)).one()
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], [(str(float(b)), float(c or 0)) for b, c in zip(
        bounds, cumulative, strict=True)] + [("+Inf", float(total))], float(value_sum))
    return family, int(total)


def _epoch(session: Any, column: Any) -> Any:
    """Seconds since the epoch of a timestamp column, in the dialect's own words."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", column)
    return func.julianday(column) * 86400.0


def render(rt: Runtime) -> bytes:
    """The text exposition: this process's metrics (or every process's, in multiprocess
    mode) and the database's figures."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
        own: bytes = b""
    else:
        from prometheus_client import REGISTRY

        own = generate_latest(REGISTRY)
    registry.register(DatabaseCollector(rt))
    return own + generate_latest(registry)
