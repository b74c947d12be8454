"""`lianfang_stream_lag{stream,group}` shows a consumer group that stopped reading, also when
the service that owns the group is down and nobody scrapes its own /metrics: the stream's
producer reports every consumer group of the streams it writes (shared.metrics)."""

from __future__ import annotations

import redis as sync_redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import streams
from shared.metrics import observe_streams


def gauges(reader: InMemoryMetricReader, name: str) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    found: dict[tuple[str, str], int] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[(point.attributes["stream"], point.attributes["group"])] = \
                            int(point.value)
    return found


def test_a_down_notify_s_unread_orders_show_in_dispatch_s_lag_and_pending(
        clean_redis: str) -> None:
    client = sync_redis.Redis.from_url(clean_redis)
    for group in ("notify", "volunteers"):
        client.xgroup_create(streams.ORDER_ISSUED.name, group, id="0", mkstream=True)
    client.xgroup_create(streams.ORDER_DELIVERED.name, "dispatch", id="0", mkstream=True)
    for n in range(5):
        client.xadd(streams.ORDER_ISSUED.name, {"n": str(n)})
    # volunteers read all five and acknowledged them; notify read two, died holding them, and
    # has been down since: three orders never read by any phone's service.
    client.xreadgroup("volunteers", "v1", {streams.ORDER_ISSUED.name: ">"})
    (_, read), = client.xreadgroup("volunteers", "v1", {streams.ORDER_ISSUED.name: "0"})
    client.xack(streams.ORDER_ISSUED.name, "volunteers", *[entry_id for entry_id, _ in read])
    client.xreadgroup("notify", "n1", {streams.ORDER_ISSUED.name: ">"}, count=2)
    client.close()

    reader = InMemoryMetricReader()
    observe_streams("dispatch", clean_redis,
                    meter_provider=MeterProvider(metric_readers=[reader]))

    lag = gauges(reader, "lianfang.stream.lag")
    pending = gauges(reader, "lianfang.stream.pending")
    assert lag[("order.issued", "notify")] == 3
    assert pending[("order.issued", "notify")] == 2
    assert lag[("order.issued", "volunteers")] == 0
    assert pending[("order.issued", "volunteers")] == 0
    assert lag[("order.delivered", "dispatch")] == 0  # its own group, as before
