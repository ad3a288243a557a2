"""Peer: a bare Faust agent that only decodes each message (orjson). Run as
`python -m bench.faust_bare_app BROKER TOPIC N OUT_JSON`; writes events/s."""

import os
import sys
import time

import faust
import orjson

from agents import kafka_security

broker, topic_name, total, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
app = faust.App(f"bench-bare-{int(time.time() * 1000)}", broker=f"kafka://{broker}", store="memory://",
                web_enabled=False, consumer_auto_offset_reset="earliest", topic_allow_declare=False,
                broker_credentials=kafka_security.broker_credentials())  # fmt: skip
topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
seen = {"n": 0, "first": 0.0}


@app.agent(topic)
async def decode(stream):
    async for value in stream:
        if seen["n"] == 0:
            seen["first"] = time.perf_counter()
        orjson.loads(value)
        seen["n"] += 1
        if seen["n"] >= total:
            elapsed = time.perf_counter() - seen["first"]
            with open(out, "wb") as f:
                f.write(orjson.dumps({"events": seen["n"], "seconds": elapsed}))
            os._exit(0)  # SystemExit inside an agent would only crash the agent


if __name__ == "__main__":
    from faust.worker import Worker

    Worker(app, loglevel="error").execute_from_commandline()
