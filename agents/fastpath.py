"""The batch path: input records go from Faust's fetch loop to the pipeline one
partition-batch at a time.

Faust's per-message delivery (a Message object, four asyncio tasks and a queue
per message) caps a worker near 14k events/s. This replaces its consumer's
`_drain_messages` with a loop that keeps what matters of Faust — group
membership, assignment, generation checks, flow control (rebalances stop the
flow), seeking — and hands the raw aiokafka records of our input topics to
`Pipeline.handle_batch`. Records of every other topic (Faust's own leader
topic, changelogs) still go down the original per-message path.

Input offsets are then committed by the pipeline inside each partition's
state transaction (`send_offsets_to_transaction`), never by Faust: no Faust
message is created for input records, so Faust has nothing to ack or commit
for them.

This touches private internals of faust-streaming 0.15.3 (pinned);
tests/unit/test_faust_pin.py fails if they change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from time import monotonic
from typing import Any

from faust.types import TP

log = logging.getLogger("opspulse.fastpath")

BatchHandler = Callable[[str, int, list[Any], Callable[[], bool]], Awaitable[None]]


def install(app: Any, input_topics: set[str], handle_batch: BatchHandler) -> None:
    """Make `app`'s consumer deliver records of `input_topics` in batches to `handle_batch`."""
    consumer_cls = type(app.consumer)
    original = consumer_cls._drain_messages

    async def _drain_messages(self: Any, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        callback = self.callback
        to_message = self._to_message
        set_read_offset = self._read_offset.__setitem__
        monitor = self.app.monitor
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    try:  # as Faust's getmany: back to the committed offsets while rebalancing
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("seek while flow is stopped failed: %r", exc)
                    continue
                generation = self.app.consumer_generation_id
                for tp, batch in records.items():
                    if (
                        not batch
                        or not self.flow_active
                        or self.app.consumer_generation_id != generation
                    ):
                        break
                    if (
                        active is not None
                        and tp not in active
                        and tp not in self._buffered_partitions
                    ):
                        continue
                    if tp.topic in input_topics:
                        if tp not in self.assignment():
                            continue  # revoked meanwhile; the new owner reads from the committed offsets
                        await handle_batch(
                            tp.topic, tp.partition, batch, lambda tp=tp: tp in self.assignment()
                        )
                        if monitor is not None:  # as a Faust stream would: no "Stream has
                            # not started processing" errors while the worker catches up
                            monitor.stream_inbound_time[tp] = monotonic()
                    else:
                        for record in batch:
                            await callback(to_message(tp, record))
                    set_read_offset(tp, batch[-1].offset)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    _drain_messages.__wrapped__ = original  # type: ignore[attr-defined]
    consumer_cls._drain_messages = _drain_messages


def mark_committed(app: Any, tps: Iterable[tuple[str, int]]) -> None:
    """Tell Faust's consumer thread these input partitions were just committed (by the
    pipeline's transactions, which Faust does not see), as its own commit does; else
    its event-path check logs "Has not committed ... since worker start" at ERROR."""
    thread = getattr(app.consumer, "_thread", None)
    committed = getattr(thread, "tp_last_committed_at", None)
    if committed is not None:
        now = monotonic()
        committed.update({TP(topic, partition): now for topic, partition in tps})
