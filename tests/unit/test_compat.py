"""Stored state survives format and config changes it can follow, and stops the
worker with one clear line on those it cannot (records of the previous format are
literal bytes written by the code before versioning)."""

import asyncio
from dataclasses import replace

import orjson
import pytest

from agents.statestore import META_KEY, Outgoing, PartitionStore
from state.config import DAY_MS, Config, ConfigError, FunnelSpec
from state.fold import Fold
from state.report import build_report
from streams.events import Event

T0 = 20758 * DAY_MS
PURCHASE = FunnelSpec("purchase", ("page_view", "add_to_cart", "checkout", "order_paid"), DAY_MS)
QUICK = FunnelSpec("quick", ("login", "add_to_cart"), 3_600_000)

# Written by the previous format (user record v2, unversioned day and meta records)
# for one user: login, page_view, add_to_cart, order_paid on 2026-11-01, funnels
# (purchase, quick), commit with clicks offset 3.
OLD_STATE = {
    b"u/u1": b'[2,1793491201000,"e1",20758,1793491380000,null,null,null,20758,"1","1",1,1999,1793491380000,1793491380000,1793491201000,["e1",0,"e2",59000,"e3",119000,"o1",179000],[[59000,0,119000,1,179000,3],[0,0,119000,1]],[[[20758,2]],[[20758,2]]]]',
    b"d/20758": b'{"day":20758,"fields":[4,1,1,1,1,1,1,1999,0],"retention":[1'
    + b",0" * 90
    + b'],"funnels":[[1,1,0,0],[1,1]]}',
    b"m": b'{"offsets":{"clicks":3},"watermarks":{"clicks":1793491380000},"counters":{"consumed":4,"valid":4,"duplicates":0,"invalid":0,"late":0}}',
}
EVENTS = [
    Event("e1", "u1", T0 + 1000, "login"),
    Event("e2", "u1", T0 + 60_000, "page_view"),
    Event("e3", "u1", T0 + 120_000, "add_to_cart"),
    Event("o1", "u1", T0 + 180_000, "order_paid", order_id="x", amount_cents=1999),
]


def restored(config, latest):
    async def run():
        store = PartitionStore("unused:9092", "app", 0, config)
        fold = Fold(config, [("clicks", 0), ("orders", 0)])
        offsets = store.restore(fold, latest)
        return store, fold, offsets

    return asyncio.run(run())


def folded(config, events=EVENTS):
    fold = Fold(config, [("clicks", 0), ("orders", 0)])
    fold.apply_batch([(e.user_id, e) for e in events], ("clicks", 0))
    return fold


def committed(store, fold, offsets):
    out = Outgoing()
    store.collect(fold, offsets, out)
    return {key: value for topic, _, key, value, _ in out.records if topic == store.state_topic}


# Written by the format before breakdowns (user record v3, day record v2, meta v2
# without breakdowns) for the same events, the login from channel "ads".
V3_STATE = {
    b"u/u1": b'[3,1793491201000,"e1",20758,1793491380000,"ads",null,null,20758,"1","1",1,1999,1793491380000,1793491380000,1793491201000,["e1",0,"e2",59000,"e3",119000,"o1",179000],{"purchase":[59000,0,119000,1,179000,3],"quick":[0,0,119000,1]},{"purchase":[[20758,2]],"quick":[[20758,2]]}]',
    b"d/20758": b'{"v":2,"day":20758,"fields":[4,1,1,1,1,1,1,1999,0],"retention":[1'
    + b",0" * 90
    + b'],"funnels":{"purchase":[1,1,0,0],"quick":[1,1]},"spend":{}}',
    b"m": b'{"v":2,"offsets":{"clicks":3},"watermarks":{"clicks":1793491380000},"counters":{"consumed":4,"valid":4,"duplicates":0,"invalid":0,"late":0},"config":{"retired":{},"timezone":"UTC","inactive_types":["order_refunded","push_sent"],"allowed_lateness_ms":172800000,"partitions":8,"funnels":[{"name":"purchase","steps":["page_view","add_to_cart","checkout","order_paid"],"window_ms":86400000,"since":null},{"name":"quick","steps":["login","add_to_cart"],"window_ms":3600000,"since":null}]}}',
}
WITHOUT_BREAKDOWNS = ("breakdowns", "channels", "cohorts")  # new since those formats
SEGMENT_KEYS = ("repurchase_rate_30d", "ltv_tiers", "rfm", "lifecycle")  # since v6


def totals(report):
    out = {k: v for k, v in report.items() if k not in WITHOUT_BREAKDOWNS}
    out["days"] = {
        d: {k: v for k, v in row.items() if k not in SEGMENT_KEYS} for d, row in out["days"].items()
    }
    return out


@pytest.mark.parametrize("state", [OLD_STATE, V3_STATE], ids=["v2", "v3"])
def test_records_of_previous_formats_load_as_the_same_state(state):
    config = Config(funnels=(PURCHASE, QUICK))
    _, fold, offsets = restored(config, state)
    assert offsets == {"clicks": 3}
    events = EVENTS if state is OLD_STATE else [replace(EVENTS[0], channel="ads"), *EVENTS[1:]]
    expected = folded(config, events)
    for user in (*fold.users.values(), *expected.users.values()):
        assert user.ledger is None or user.ledger
        user.ledger = None  # what the user added to breakdowns is unknown before v4
    # Before v6 the cart day and money per day are unknown: the totals are the base.
    for user in fold.users.values():
        assert (user.cart_day, user.money, user.money_base) == (None, None, [1, 1999, 20758])
    for user in (*fold.users.values(), *expected.users.values()):
        user.cart_day = user.money = user.money_base = user.published = None
        user.goal_ts = user.carts = user.alert_steps = []  # kept since v6
        user.cart_days = user.refund_days = []  # churn signals, appended to v6
    assert fold.users == expected.users
    report = build_report(fold.partials, config)
    assert totals(report) == totals(build_report(expected.partials, config))
    # Breakdowns start with the upgrade: they count in full from the next day on.
    assert {dim: b["since"] for dim, b in report["breakdowns"].items()} == dict.fromkeys(
        ("channel", "device", "region"), "2026-11-02"
    )


def test_adding_and_reordering_funnels_keeps_the_data_of_the_others():
    old = Config(funnels=(PURCHASE, QUICK))
    store, fold, _ = restored(old, OLD_STATE)
    state = committed(store, folded(old), {"clicks": 3})  # now in the current format
    signup = FunnelSpec("signup", ("page_view", "login"), DAY_MS)
    new = Config(funnels=(QUICK, signup, PURCHASE))
    _, fold, _ = restored(new, state)
    report = build_report(fold.partials, new)
    day = "2026-11-01"
    assert report["funnels"]["purchase"]["days"][day] == [1, 1, 0, 0]
    assert report["funnels"]["quick"]["days"][day] == [1, 1]
    assert report["funnels"]["signup"]["since"] == "2026-11-02"  # counts in full from then
    assert report["funnels"]["purchase"]["since"] is None
    # Also from the previous format directly (positions named by the current config).
    _, fold, _ = restored(Config(funnels=(PURCHASE, QUICK)), OLD_STATE)
    assert build_report(fold.partials, old)["funnels"]["quick"]["days"][day] == [1, 1]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"timezone": "Asia/Shanghai"}, "timezone changed from 'UTC' to 'Asia/Shanghai'"),
        ({"inactive_types": ["push_sent"]}, "inactive_types changed"),
        ({"allowed_lateness": "3d"}, "allowed_lateness grew"),
        ({"topics": {"partitions": 16}}, "partitions changed from 8 to 16"),
        (
            {"funnels": [{"name": "purchase", "steps": ["page_view", "order_paid"]}]},
            "funnel 'purchase' changed its steps or window",
        ),
        ({"ltv_tiers": [500, 1000]}, "segments changed"),
        ({"lifecycle": {"churned_days": 60}}, "segments changed"),
        ({"rfm": {"monetary": 250.5}}, "segments changed"),
    ],
)
def test_an_incompatible_change_is_refused_with_one_line_saying_what_to_do(change, words):
    config = Config()
    store, _, _ = restored(config, {})
    state = committed(store, folded(config), {"clicks": 3})
    with pytest.raises(ConfigError) as error:
        restored(Config.from_mapping(change), state)
    message = str(error.value)
    assert words in message and "new app_id" in message and "\n" not in message


def test_compatible_changes_are_accepted():
    config = Config()
    store, _, _ = restored(config, {})
    state = committed(store, folded(config), {"clicks": 3})
    for change in ({"allowed_lateness": "1d"}, {"max_message_bytes": 1000}, {"funnels": []}):
        restored(Config.from_mapping(change), state)  # no error
    meta = orjson.loads(state[META_KEY])
    assert meta["v"] == 2 and meta["config"]["timezone"] == "UTC"


def test_a_removed_funnel_cannot_come_back_with_other_steps():
    config = Config(funnels=(PURCHASE, QUICK))
    store, _, _ = restored(config, {})
    state = committed(store, folded(config), {"clicks": 3})
    without_quick = Config(funnels=(PURCHASE,))
    store, fold, _ = restored(without_quick, state)  # removing it is fine...
    state |= committed(store, fold, {"clicks": 3})
    other_quick = FunnelSpec("quick", ("page_view", "checkout"), 3_600_000)
    with pytest.raises(ConfigError, match="funnel 'quick' changed its steps or window"):
        restored(Config(funnels=(PURCHASE, other_quick)), state)  # ...reusing its name is not
    restored(Config(funnels=(PURCHASE, QUICK)), state)  # the same definition may return
