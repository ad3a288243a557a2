"""One small module per KPI, behind one protocol (as river's estimators).

A KPI says which event types it reads (`wants`), folds one event into its part
of the user's record, appending additive effects (`apply`), and renders its part
of the report from the merged partials (`render`). Partials are shared additive
tables (state/partials.py): merging is addition for every KPI. A new KPI is a
new module added to `KPIS`, not a branch in a shared function; the same check
battery (tests/unit/test_kpi_battery.py) runs on each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from state.config import Config
    from state.partials import Effect, Partials
    from state.user import Context, EventLike, UserState


class Kpi(Protocol):
    name: str

    def wants(self, event_type: str, ctx: Context) -> bool:
        """Whether events of this type change this KPI (decided once per type)."""
        ...

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        """Fold one valid, new event into the user's record; append its effects."""
        ...

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        """Write this KPI's part of the report (`report["days"]` holds a dict per day)."""
        ...


def all_kpis() -> tuple[Kpi, ...]:
    """The KPIs every fold computes, in the order they see an event."""
    from state.churn_features import ChurnSignals
    from state.kpis.activation import Activation
    from state.kpis.active_days import ActiveDays
    from state.kpis.activity import Activity
    from state.kpis.alert_orders import AlertOrders
    from state.kpis.alert_rates import AlertRates
    from state.kpis.breakdowns import Breakdowns
    from state.kpis.channels import Channels
    from state.kpis.churn import Churn
    from state.kpis.experiments import Experiments
    from state.kpis.funnels import Funnels
    from state.kpis.orders import Orders
    from state.kpis.paid_7d import Paid7d
    from state.kpis.period_retention import monthly, paying_monthly, weekly
    from state.kpis.push import Push
    from state.kpis.reactivation import Reactivation
    from state.kpis.repurchase_cycle import RepurchaseCycle
    from state.kpis.segments import Segments
    from state.kpis.triggers import Carts

    # The cohort views and segments read the record as it was before the event: they
    # come first.
    cohort_views = (
        weekly(), monthly(), paying_monthly(), ActiveDays(), Activation(), Reactivation(),
        Segments(), Paid7d(),
    )  # fmt: skip
    return (
        *cohort_views,
        RepurchaseCycle(),
        Carts(),  # reads the paid instants the repurchase cycle keeps
        Activity(),
        Orders(),
        Funnels(),
        Breakdowns(),
        Channels(),
        Push(),
        Experiments(),
        AlertRates(),
        AlertOrders(),
        ChurnSignals(),
        Churn(),
    )
