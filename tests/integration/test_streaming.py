"""Live workers on a real broker give exactly the replay's numbers — with one worker,
through kill -9 and restarts, through rebalances and a whole-cluster restart."""

import asyncio
import random
import re
import shutil

import orjson
import pytest
from cluster import same_numbers

from streams.events import REASONS
from streams.generator import GeneratorSpec

pytestmark = pytest.mark.slow

KILLS = 5
SPEC = GeneratorSpec(seed=21, days=5, new_users_per_day=60, duplicate_rate=0.02, invalid_rate=0.003)


async def test_one_worker_snapshot_equals_replay(cluster):
    cluster.start("w1")
    sent = await cluster.produce(SPEC)
    live = await cluster.wait_consumed(timeout=120)
    replayed = cluster.replay()
    assert same_numbers(live, replayed) == {}
    events = live["events"]
    assert (
        events["consumed"]
        == sent
        == events["valid"] + events["duplicates"] + events["invalid"] + events["late"]
    )
    assert events["duplicates"] > 0 and events["invalid"] > 0
    assert await cluster.wait_lag_zero() == 0

    # Every invalid message is on the dead-letter topic once, untouched, with its reason.
    letters = await cluster.dead_letters(events["invalid"])
    assert len(letters) == events["invalid"]
    produced = set(cluster.clicks.read_bytes().splitlines()) | set(
        cluster.orders.read_bytes().splitlines()
    )
    for value, headers in letters:
        assert value in produced
        assert headers["opspulse.reason"].decode() in REASONS
        assert headers["opspulse.topic"].decode() in {
            cluster.config.topics.clicks,
            cluster.config.topics.orders,
        }
        assert int(headers["opspulse.offset"]) >= 0 and 0 <= int(headers["opspulse.partition"]) < 4

    # The Prometheus scrape agrees with the report.
    metrics = cluster.scrape("w1")
    assert metrics[("opspulse_events", (("outcome", "consumed"),))] == sent
    invalid_total = sum(
        v for (name, _), v in metrics.items() if name == "opspulse_invalid_events_total"
    )
    assert invalid_total == events["invalid"]
    assert all("user" not in dict(labels) for _, labels in metrics)
    assert cluster.stop("w1") == 0  # SIGTERM: a clean, prompt shutdown
    # At INFO the log names no user and quotes no payload, not even of dead letters.
    log = (cluster.tmp / "w1.log").read_text(errors="replace")
    assert "consumed" in log or "partition" in log  # the log is there and was written
    assert not re.search(r"u\d{7}", log), re.search(r".{80}u\d{7}.{80}", log)
    assert '"event_id"' not in log and "e21-" not in log


async def test_kill_9_mid_stream_and_restart_counts_every_event_once(cluster):
    cluster.start("w1")
    cluster.start("w2")
    rnd = random.Random(3)
    producing = asyncio.create_task(
        cluster.produce(
            GeneratorSpec(seed=22, days=6, new_users_per_day=80, duplicate_rate=0.02), rate=1500
        )
    )
    for _ in range(3):
        await asyncio.sleep(rnd.uniform(3, 7))
        victim = rnd.choice(sorted(cluster.workers))
        cluster.kill(victim)
        await asyncio.sleep(rnd.uniform(1, 4))
        cluster.start(victim)
    await producing
    live = await cluster.wait_consumed(timeout=180)
    replayed_segments = cluster.tmp / "segments.jsonl"
    replayed_triggers = cluster.tmp / "triggers.jsonl"
    replayed_scores = cluster.tmp / "churn-scores.jsonl"
    outputs = {
        "segments": replayed_segments, "triggers": replayed_triggers,
        "churn_scores": replayed_scores,
    }  # fmt: skip
    assert same_numbers(live, cluster.replay(outputs)) == {}
    assert await cluster.wait_lag_zero() == 0
    # Segment changes exactly once: per user and kind each record starts where the
    # previous one ended, and the last ones are those replay publishes.
    records = [
        orjson.loads(r.value) for r in await cluster.read_topic(cluster.config.topics.segments)
    ]
    replayed = [orjson.loads(line) for line in replayed_segments.read_bytes().splitlines()]
    assert len(records) > 1000
    assert last_classes(records) == last_classes(replayed)
    # Cart triggers exactly once: each cart published at most once, retracted at most
    # once and only after it was published; the carts left abandoned are replay's.
    triggers = [
        orjson.loads(r.value) for r in await cluster.read_topic(cluster.config.topics.triggers)
    ]
    replayed = [orjson.loads(line) for line in replayed_triggers.read_bytes().splitlines()]
    assert len(triggers) > 50
    assert abandoned(triggers) == abandoned(replayed)
    assert sum(live["triggers"]["cart_abandoned"].values()) == len(abandoned(triggers))
    # Churn: the model learnt each label once across the kills (the report's quality,
    # compared above, is scored with it), and the score records are replay's, once each.
    assert live["churn"]["labelled"] > 50
    scores = [
        orjson.loads(r.value) for r in await cluster.read_topic(cluster.config.topics.churn_scores)
    ]
    replayed = [orjson.loads(line) for line in replayed_scores.read_bytes().splitlines()]
    key = lambda r: (r["user_id"], r["ts"])  # noqa: E731
    assert len(scores) > 20
    assert sorted(scores, key=key) == sorted(replayed, key=key)


def abandoned(records: list[dict]) -> set:
    """The carts published and not retracted, checking the once-only rules."""
    published: set = set()
    retracted: set = set()
    for r in records:
        cart = (r["user_id"], r["cart_event_id"])
        if r.get("retracted"):
            assert cart in published and cart not in retracted, r
            retracted.add(cart)
        else:
            assert cart not in published, r
            published.add(cart)
    return published - retracted


def last_classes(records: list[dict]) -> dict:
    """The last class per (user, kind), checking that each record follows the last."""
    last: dict = {}
    for r in records:
        key = (r["user_id"], r["kind"])
        assert r["from"] == last.get(key) != r["to"], (r, last.get(key))
        last[key] = r["to"]
    return last


async def test_worker_joining_and_leaving_mid_stream_changes_nothing(cluster):
    cluster.start("w1")
    producing = asyncio.create_task(
        cluster.produce(GeneratorSpec(seed=23, days=5, new_users_per_day=70), rate=1500)
    )
    await asyncio.sleep(4)
    cluster.start("w2")  # rebalance: joins
    await asyncio.sleep(8)
    assert cluster.stop("w2") == 0  # rebalance: leaves cleanly
    await producing
    live = await cluster.wait_consumed(timeout=120)
    assert same_numbers(live, cluster.replay()) == {}


async def test_user_lookup_is_routed_to_the_owning_worker(cluster):
    cluster.start("w1")
    cluster.start("w2")
    await cluster.produce(GeneratorSpec(seed=28, days=2, new_users_per_day=30))
    await cluster.wait_consumed()
    await cluster.wait_ready(["w1", "w2"])
    _, fold, _ = __import__("agents.replay", fromlist=["replay_files"]).replay_files(
        cluster.config, cluster.clicks, cluster.orders
    )
    for user_id in sorted(fold.users)[:5]:
        answers = [cluster.get(name, f"/users/{user_id}") for name in ("w1", "w2")]
        assert answers[0] == answers[1]
        assert answers[0]["orders_paid"] == fold.users[user_id].orders_paid
        assert answers[0]["first_seen_ts"] == fold.users[user_id].first_ts
    assert cluster.get("w1", "/users/nobody-at-all", expect=404)


async def test_worker_refuses_clicks_and_orders_with_different_partition_counts(
    cluster, kafka_bootstrap
):
    import subprocess
    import sys

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics(
        [NewTopic(cluster.config.topics.clicks, 2, 1), NewTopic(cluster.config.topics.orders, 3, 1)]
    )
    await admin.close()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "worker",
            "--config",
            str(cluster.config_path),
            "--web-port",
            "0",
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "same partition count" in lines[0]
        and "has 2" in lines[0]
        and "has 3" in lines[0]
    )


async def test_whole_cluster_restart_recovers_state_from_kafka(cluster):
    cluster.start("w1")
    cluster.start("w2")
    await cluster.produce(GeneratorSpec(seed=24, days=4, new_users_per_day=60))
    before = await cluster.wait_consumed()
    cluster.kill("w1")
    cluster.kill("w2")
    cluster.start("w1")
    cluster.start("w2")
    # More traffic, inside the lateness bound, from the same user ids (the generator numbers
    # users from u0000000): right only if their records were recovered.
    await cluster.produce(GeneratorSpec(seed=25, days=3, start="2026-11-06", new_users_per_day=60))
    after = await cluster.wait_consumed(timeout=180)
    assert after["events"]["consumed"] > before["events"]["consumed"]
    assert same_numbers(after, cluster.replay()) == {}
    assert await cluster.wait_lag_zero() == 0


async def test_lost_or_corrupt_local_stores_are_rebuilt_from_kafka(cluster):
    """The disk tier is a cache: a restart reads only the state topic's tail into an
    intact local store, and rebuilds a deleted or corrupted one from the topic; the
    numbers stay replay's either way."""
    cluster.start("w1")
    await cluster.produce(GeneratorSpec(seed=26, days=3, new_users_per_day=60))
    await cluster.wait_consumed()
    await asyncio.sleep(2)  # past a commit interval: the local stores hold the commit
    cluster.kill("w1")
    stores = sorted(p for p in (cluster.tmp / "w1" / "state").glob("*/*") if p.is_dir())
    assert [p.name for p in stores] == ["0", "1", "2", "3"]
    shutil.rmtree(stores[0])
    for path in [*stores[1].glob("*.sst"), *stores[1].glob("*.log")]:
        data = bytearray(path.read_bytes())
        data[len(data) // 3 :] = bytes(len(data) - len(data) // 3)  # zeroed from a third on
        path.write_bytes(bytes(data))
    cluster.start("w1")
    # More traffic from the same user ids, inside the lateness bound.
    await cluster.produce(GeneratorSpec(seed=27, days=2, start="2026-11-05", new_users_per_day=60))
    after = await cluster.wait_consumed(timeout=180)
    assert same_numbers(after, cluster.replay()) == {}
    tails = re.findall(r"partition (\d) recovered: \d+ users .* from its local store and the "
                       r"topic's tail \((\d+) records read\)", cluster.log("w1"))  # fmt: skip
    # The intact stores read a short tail; the deleted one the whole topic (the last
    # recovery of each partition is the restart's).
    read = {p: int(n) for p, n in tails}
    assert read["0"] > 10 * max(read["2"], read["3"], 1)


async def test_killed_workers_partitions_are_processed_again_within_30_seconds(cluster):
    import time
    import urllib.request

    def ready(name):
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{cluster.ports[name]}/ready", timeout=2
            ) as r:
                return orjson.loads(r.read())
        except Exception:
            return None

    cluster.start("w1")
    cluster.start("w2")
    await cluster.produce(GeneratorSpec(seed=26, days=2, new_users_per_day=40))
    await cluster.wait_consumed()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [ready("w1"), ready("w2")]
        if all(s and s["ready"] for s in states) and sum(len(s["partitions"]) for s in states) == 4:
            break
        await asyncio.sleep(0.5)
    cluster.kill("w1")
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < 60:
        state = ready("w2")
        if state and state["ready"] and len(state["partitions"]) == 4:
            break
        await asyncio.sleep(0.25)
    failover_s = time.monotonic() - killed_at
    print(
        f"failover: partitions of the killed worker ready on the survivor after {failover_s:.1f}s"
    )
    assert failover_s < 30
    await cluster.produce(GeneratorSpec(seed=27, days=1, start="2026-11-02", new_users_per_day=40))
    live = await cluster.wait_consumed()
    assert same_numbers(live, cluster.replay()) == {}


async def test_bearer_token_guards_users_and_report_not_metrics_or_probes(cluster):
    cluster.env["OPSPULSE_HTTP_TOKEN"] = "s3cret-token"
    cluster.start("w1")
    cluster.start("w2")
    await cluster.produce(GeneratorSpec(seed=29, days=1, new_users_per_day=20))
    await cluster.wait_consumed()
    await cluster.wait_ready(["w1", "w2"])
    good = {"Authorization": "Bearer s3cret-token"}
    for name in ("w1", "w2"):
        for path in ("/report", "/users/u0000001"):
            cluster.get(name, path, expect=401)
            cluster.get(name, path, expect=401, headers={"Authorization": "Bearer wrong"})
        assert cluster.get(name, "/report", headers=good)["events"]["consumed"] > 0
        # Forwarded to the owning worker with the header: the same answer from both.
        assert cluster.get(name, "/users/u0000001", headers=good)["user_id"] == "u0000001"
        cluster.get(name, "/metrics")
        cluster.get(name, "/health")
