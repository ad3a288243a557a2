"""The Faust application: settings, topics, the ingest agent and web views.

Agents stay short: parse, call `state/`, write topics. Everything a number
depends on lives in `state/`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust
from aiohttp.web import Response

from agents.pipeline import Pipeline
from agents.settings import broker_url
from state.config import Config

log = logging.getLogger("opspulse")


def create_app(
    config: Config,
    *,
    web_host: str = "127.0.0.1",
    web_port: int = 6066,
    data_dir: str | Path = ".opspulse",
    app_id: str = "opspulse",
) -> faust.App:
    """A worker's Faust app over the configured click and order topics."""
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=broker_url(),
        datadir=str(data),
        store="memory://",
        web_host=web_host,
        web_bind=web_host,
        web_port=web_port,
        web_tables_enabled=False,  # no table dumps over HTTP
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_router_enabled=False,
        topic_partitions=config.topics.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=config.commit_interval_ms / 1000,
    )
    topics = config.topics
    inputs = app.topic(
        topics.clicks, topics.orders, key_serializer="raw", value_serializer="raw",
        partitions=topics.partitions,
    )  # fmt: skip
    dlq = app.topic(
        topics.dlq, key_serializer="raw", value_serializer="raw", partitions=topics.partitions
    )
    pipeline = Pipeline(config, send=_dlq_sender(dlq))
    app.opspulse_pipeline = pipeline  # type: ignore[attr-defined]

    @app.agent(inputs, name="opspulse.ingest")
    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await pipeline.handle(
                message.topic, message.partition, message.offset, message.key, message.value
            )

    @app.page("/health")
    async def health(web: Any, request: Any) -> Response:
        return web.json({"status": "ok"})

    @app.page("/report")
    async def report(web: Any, request: Any) -> Response:
        return web.json(pipeline.report())

    return app


def _dlq_sender(topic: Any) -> Any:
    async def send(_name: str, *, value: bytes, key: bytes | None, headers: list) -> Any:
        return await topic.send(key=key, value=value, headers=headers)

    return send
