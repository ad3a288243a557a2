"""What a worker does with each input message: validate, dead-letter or fold.

Holds one `Fold` per input partition (clicks-p and orders-p feed the same
users, so they share it). No Faust import here: the app hands messages in.
"""

from __future__ import annotations

from typing import Any

from state.config import Config
from state.fold import Fold
from state.partials import Partials
from state.report import build_report
from streams.dlq import DeadLetterWriter, SendFn
from streams.events import Invalid, parse_event


class Pipeline:
    """Per-partition KPI state of one worker."""

    def __init__(self, config: Config, send: SendFn) -> None:
        self.config = config
        self.dead_letters = DeadLetterWriter(send, config.topics.dlq)
        self.folds: dict[int, Fold] = {}
        self.invalid_by_reason: dict[tuple[str, str], int] = {}

    def fold_for(self, partition: int) -> Fold:
        fold = self.folds.get(partition)
        if fold is None:
            topics = self.config.topics
            sources = [(topics.clicks, partition), (topics.orders, partition)]
            fold = self.folds[partition] = Fold(self.config, sources)
        return fold

    async def handle(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes
    ) -> None:
        fold = self.fold_for(partition)
        event = parse_event(value or b"", max_bytes=self.config.max_message_bytes)
        if isinstance(event, Invalid):
            fold.count_invalid()
            await self._dead_letter(
                topic, partition, offset, key, value, event.reason, event.detail
            )
            return
        for late in fold.apply_batch([(event.user_id, event)], (topic, partition)):
            detail = "older than the partition watermark minus allowed_lateness"
            await self._dead_letter(topic, partition, offset, key, value, "late", detail)
            del late

    async def _dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        reason: str,
        detail: str,
    ) -> None:
        counter = (topic, reason)
        self.invalid_by_reason[counter] = self.invalid_by_reason.get(counter, 0) + 1
        await self.dead_letters.write(
            value or b"",
            key=key,
            reason=reason,
            detail=detail,
            topic=topic,
            partition=partition,
            offset=offset,
        )

    def partials(self) -> Partials:
        merged = Partials(funnel_steps=tuple(len(f.steps) for f in self.config.funnels))
        for fold in self.folds.values():
            merged.merge(fold.partials)
        return merged

    def report(self) -> dict[str, Any]:
        return build_report(self.partials(), self.config)
