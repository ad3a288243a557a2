"""What agents/ relies on from faust-streaming: fails when an upgrade changes it.

The worker acknowledges input messages only after their state transaction
committed (manual acks on a `noack()` stream), waits for a partition's state
before processing it (messages can arrive before the assignment signal), and
routes `/users/{id}` by the input topic's partitioner.
"""

import inspect
from importlib.metadata import version

import faust
from faust.app.router import Router
from faust.streams import Stream
from faust.transport.consumer import Consumer


def test_faust_is_the_pinned_version():
    assert version("faust-streaming") == "0.15.3"


def test_manual_acks_are_available_on_a_noack_stream():
    assert "enable_acks=False" in inspect.getsource(Stream.noack)
    assert "self.message.ack(self.app.consumer)" in inspect.getsource(faust.Event.ack)


def test_commits_cover_only_acked_offsets():
    # Faust commits the highest contiguous acked offset: unacked messages are never committed.
    assert "self._acked[tp]" in inspect.getsource(Consumer._new_offset)
    assert "_filter_tps_with_pending_acks" in inspect.getsource(Consumer.force_commit)


def test_revocation_waits_for_unacked_messages():
    assert "_consumer_wait_empty" in inspect.getsource(faust.App._on_partitions_revoked)
    assert "while not self.should_stop and self._unacked_messages" in inspect.getsource(
        Consumer.wait_empty
    )


def test_assignment_signal_is_sent_after_the_consumer_is_assigned():
    source = inspect.getsource(faust.App._on_partitions_assigned)
    assert source.index("on_partitions_assigned.send") > source.index(
        "topics.on_partitions_assigned"
    )


def test_the_batch_path_replaces_the_fetch_loop_it_was_written_against():
    # agents/fastpath.py re-implements Consumer._drain_messages with these internals.
    source = inspect.getsource(Consumer._drain_messages)
    for piece in ("getmany(timeout=1.0)", "self.callback",
                  "self._read_offset.__setitem__", "self.suspend_flow.wait()", "consumer_stopped_errors"):  # fmt: skip
        assert piece in source, piece
    getmany = inspect.getsource(Consumer.getmany)
    for piece in ("await self._wait_next_records(timeout)", "self.app.consumer_generation_id",
                  "self._buffered_partitions", "self.perform_seek()", "to_message(tp, record)"):  # fmt: skip
        assert piece in getmany, piece


def test_the_event_path_check_reads_the_inbound_time_the_batch_path_writes():
    # Faust logs "Stream has not started processing" for a lagging partition with no
    # stream_inbound_time entry; agents/fastpath.py sets it per handled batch.
    from faust.sensors.monitor import Monitor
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "monitor.stream_inbound_time.get(tp)" in inspect.getsource(
        AIOKafkaConsumerThread.verify_event_path
    )
    assert "self.stream_inbound_time[tp] = monotonic()" in inspect.getsource(
        Monitor.on_stream_event_in
    )
    # ... and "Has not committed" unless tp_last_committed_at is set (fastpath.mark_committed).
    assert "self.tp_last_committed_at.get(tp)" in inspect.getsource(
        AIOKafkaConsumerThread.verify_event_path
    )
    assert "self.tp_last_committed_at = {}" in inspect.getsource(
        AIOKafkaConsumerThread.__post_init__
    )


def test_routing_by_input_topic_exists():
    assert "external_topic_key_store" in inspect.getsource(Router.route_topic_req)
