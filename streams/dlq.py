"""Dead letters: the original bytes, untouched, with `opspulse.*` headers saying why."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

DLQ_TOPIC = "opspulse.dlq"

SendFn = Callable[..., Awaitable[Any]]


def dead_letter_headers(
    reason: str, detail: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead letter, as the contract lists them."""
    return [
        ("opspulse.reason", reason.encode()),
        ("opspulse.detail", detail.encode()[:256]),
        ("opspulse.topic", topic.encode()),
        ("opspulse.partition", str(partition).encode()),
        ("opspulse.offset", str(offset).encode()),
    ]


class DeadLetterWriter:
    """Writes rejected messages to the dead-letter topic with any producer whose
    `send(topic, value=, key=, headers=)` is a coroutine (aiokafka, Faust)."""

    def __init__(self, send: SendFn, topic: str = DLQ_TOPIC) -> None:
        self._send = send
        self.topic = topic

    async def write(
        self,
        raw: bytes,
        *,
        key: bytes | None,
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> Any:
        return await self._send(
            self.topic,
            value=raw,
            key=key,
            headers=dead_letter_headers(reason, detail, topic, partition, offset),
        )
