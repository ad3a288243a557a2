"""Config changes on a running state: adding a funnel needs no reset (it counts from
the next day on and the report says so); an incompatible change stops the worker
with exit 2 and one line saying what to do."""

import asyncio

import pytest
from cluster import same_numbers

from agents.settings import load_config
from streams.generator import GeneratorSpec

pytestmark = pytest.mark.slow

FUNNELS = """
[[funnels]]
name = "purchase"
steps = ["page_view", "add_to_cart", "checkout", "order_paid"]
window = "24h"

[[funnels]]
name = "browse"
steps = ["page_view", "add_to_cart"]
window = "1h"
"""


async def test_adding_a_funnel_needs_no_reset_and_counts_from_the_next_day(cluster):
    cluster.start("w1")
    await cluster.produce(GeneratorSpec(seed=51, days=4, new_users_per_day=60))
    await cluster.wait_consumed()
    assert cluster.stop("w1") == 0
    original = cluster.config_path.read_text()
    cluster.config_path.write_text(original + FUNNELS)
    cluster.config = load_config(str(cluster.config_path))
    cluster.start("w1")
    await cluster.produce(GeneratorSpec(seed=52, days=2, start="2026-11-05", new_users_per_day=60))
    live = await cluster.wait_consumed(timeout=120)
    replayed = cluster.replay()
    assert live["funnels"]["browse"]["since"] == "2026-11-05"
    assert replayed["funnels"]["browse"]["since"] is None
    for report in (live, replayed):  # breakdowns hold the new funnel too, from `since` on
        for b in report["breakdowns"].values():
            for body in b["values"].values():
                del body["funnels"]["browse"]
    assert {k: v for k, v in same_numbers(live, replayed).items() if k != "funnels"} == {}
    assert live["funnels"]["purchase"] == replayed["funnels"]["purchase"]
    for day in ("2026-11-05", "2026-11-06"):  # from `since` on, the new funnel is exact
        assert live["funnels"]["browse"]["days"][day] == replayed["funnels"]["browse"]["days"][day]
        assert live["funnels"]["browse"]["days"][day][0] > 0

    # An incompatible change: the worker refuses with exit 2 and one line.
    assert cluster.stop("w1") == 0
    cluster.config_path.write_text('timezone = "Asia/Shanghai"\n' + original)
    cluster.start("w1")
    proc = cluster.workers["w1"]
    for _ in range(120):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.5)
    assert proc.returncode == 2
    lines = [line for line in cluster.log("w1").splitlines() if line.startswith("opspulse worker:")]
    assert len(lines) == 1
    assert "timezone changed from 'UTC' to 'Asia/Shanghai'" in lines[0] and "new app_id" in lines[0]
