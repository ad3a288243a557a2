"""`GET /` on a live worker: the page of the cluster snapshot (the same numbers as
`GET /report`), reloading itself, behind the bearer token like `/report`."""

import time
from datetime import UTC, datetime

from page_check import check_page, parse

from streams.generator import GeneratorSpec


async def test_the_page_is_the_live_report(cluster):
    cluster.env["OPSPULSE_HTTP_TOKEN"] = "s3cret-token"
    cluster.start("w1")
    await cluster.produce(GeneratorSpec(seed=31, days=3, start="2026-11-01", new_users_per_day=40))
    await cluster.wait_consumed()
    await cluster.wait_ready(["w1"])
    good = {"Authorization": "Bearer s3cret-token"}
    cluster.get("w1", "/", expect=401)
    cluster.get("w1", "/", expect=401, headers={"Authorization": "Bearer wrong"})
    report = cluster.get("w1", "/report", headers=good)
    took = {}
    for path in ("/report", "/", "/report", "/"):
        started = time.monotonic()
        body = cluster.get("w1", path, headers=good)
        took[path] = time.monotonic() - started
    page = body.decode()
    print(f"GET / {len(page):,} bytes in {took['/'] * 1000:.0f} ms "
          f"(GET /report {took['/report'] * 1000:.0f} ms)")  # fmt: skip
    check_page(page, report, datetime.now(UTC).date())
    doc = parse(page)
    assert doc.one("div", data_metric="dau").one("div", **{"class": "value"}).text() == (
        f"{report['days']['2026-11-03']['dau']:,}"
    )
    refresh = [m for m in doc.all("meta") if m.attrs.get("http-equiv") == "refresh"]
    assert [m.attrs["content"] for m in refresh] == ["30"]
    assert took["/"] < 3, took
    cluster.get("w1", "/health")  # still open
