"""Peer: a Quix Streams application that decodes each message and keeps a per-user
counter in its RocksDB state (with changelog). Run as
`python -m bench.quix_app BROKER TOPIC N OUT_JSON STATE_DIR GUARANTEE`; writes events/s."""

import sys
import time

import orjson
from quixstreams import Application

broker, topic_name, total, out, state_dir, guarantee = sys.argv[1:7]
total = int(total)
app = Application(
    broker_address=broker, consumer_group=f"bench-quix-{int(time.time() * 1000)}", auto_offset_reset="earliest",
    state_dir=state_dir, processing_guarantee=guarantee, loglevel="ERROR", auto_create_topics=True,
)  # fmt: skip
topic = app.topic(topic_name, value_deserializer="json", key_deserializer="bytes")
clock = {"first": 0.0}


def count(value, state):
    if not clock["first"]:
        clock["first"] = time.perf_counter()
    n = state.get("n", 0) + 1
    state.set("n", n)
    return n


sdf = app.dataframe(topic).apply(count, stateful=True)
app.run(sdf, count=total, collect=False)
elapsed = time.perf_counter() - clock["first"]
with open(out, "wb") as f:
    f.write(orjson.dumps({"events": total, "seconds": elapsed}))
