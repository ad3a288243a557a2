"""Dead letters: the original bytes, untouched, with `opspulse.*` headers saying why.

The worker sends them inside each partition's state transaction
(agents/statestore.py), so a dead letter is written exactly once too.
"""

from __future__ import annotations


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
