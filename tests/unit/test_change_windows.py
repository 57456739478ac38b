"""Blackout and maintenance windows, conflicts, active changes, and their config.

The domain functions first, then the ``changes`` config section (errors with
file, line and field), then the rules as the workflow applies them to real
changes in a temp data dir: scheduling in a blackout is refused except for
emergencies, overlapping approved changes are flagged.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from itop_tui.domain.change import ChangeRefused, iso, new_change
from itop_tui.domain.change_windows import (
    WeeklyRule,
    WindowRule,
    active_changes,
    blackout_hits,
    conflicts_with,
    find_conflicts,
    outside_maintenance,
    parse_clock,
    parse_weekday,
    time_left,
    upcoming,
)
from itop_tui.domain.models import Host, Inventory
from itop_tui.settings import ConfigError, load_settings

# A Friday.
NOW = datetime(2025, 6, 6, 12, 0, tzinfo=UTC)


def inventory() -> Inventory:
    return Inventory(hosts={
        "web01": Host(name="web01", groups=["web"], status="production"),
        "web02": Host(name="web02", groups=["web"], status="production", tags=["frozen"]),
        "db01": Host(name="db01", groups=["db"], status="production"),
    })


def change(ref: str, hosts: tuple[str, ...], start: datetime, minutes: int, state: str = "scheduled"):
    base = new_change(requester="alice", now=NOW, ref=ref, hosts=hosts)
    return replace(base, state=state, window_start=iso(start),
                   window_end=iso(start + timedelta(minutes=minutes)))


def test_weekly_rule_runs_past_midnight() -> None:
    rule = WeeklyRule(days=(4,), start=time(22, 0), end=time(2, 0))  # Friday 22:00-02:00
    found = rule.occurrences(NOW, NOW + timedelta(days=8))
    assert found == [
        (datetime(2025, 6, 6, 22, 0, tzinfo=UTC), datetime(2025, 6, 7, 2, 0, tzinfo=UTC)),
        (datetime(2025, 6, 13, 22, 0, tzinfo=UTC), datetime(2025, 6, 14, 2, 0, tzinfo=UTC)),
    ]
    # A period that started the day before the range is found too.
    saturday_1am = datetime(2025, 6, 7, 1, 0, tzinfo=UTC)
    assert rule.occurrences(saturday_1am, saturday_1am + timedelta(minutes=5)) == found[:1]
    assert rule.describe() == "fri 22:00-02:00 UTC"
    whole_day = WeeklyRule(days=(5,), start=time(0, 0), end=time(0, 0))
    assert whole_day.occurrences(NOW, NOW + timedelta(days=2)) == [
        (datetime(2025, 6, 7, tzinfo=UTC), datetime(2025, 6, 8, tzinfo=UTC))]


def test_blackouts_apply_to_the_hosts_their_selector_picks() -> None:
    freeze = WindowRule("freeze", "blackout", "tag:frozen",
                        NOW + timedelta(hours=1), NOW + timedelta(days=3))
    friday = WindowRule("friday-night", "blackout", "db",
                        weekly=WeeklyRule((4,), time(18, 0), time(23, 0)))
    rules = [freeze, friday, WindowRule("mw", "maintenance", "all",
                                        weekly=WeeklyRule((6,), time(1), time(5)))]
    inv = inventory()
    two_hours = (NOW + timedelta(minutes=30), NOW + timedelta(hours=2))
    hits = blackout_hits(rules, inv, ["web01", "web02"], *two_hours)
    assert [(h.rule, h.hosts) for h in hits] == [("freeze", ("web02",))]
    assert hits[0].describe() == "freeze (2025-06-06T13:00Z to 2025-06-09T12:00Z) on web02"
    assert blackout_hits(rules, inv, ["web01"], *two_hours) == []
    evening = (NOW + timedelta(hours=7), NOW + timedelta(hours=8))
    assert [h.rule for h in blackout_hits(rules, inv, ["db01", "web02"], *evening)] == [
        "freeze", "friday-night"]
    # Ending when the blackout starts is not inside it.
    assert blackout_hits([freeze], inv, ["web02"], NOW, NOW + timedelta(hours=1)) == []


def test_a_broken_selector_protects_every_host() -> None:
    rule = WindowRule("odd", "blackout", "nosuchgroup:&", NOW, NOW + timedelta(hours=1))
    assert rule.applies_to(inventory(), ["web01", "db01"]) == ["web01", "db01"]


def test_outside_maintenance_names_hosts_whose_windows_do_not_hold_the_change() -> None:
    sunday = WindowRule("sunday", "maintenance", "web",
                        weekly=WeeklyRule((6,), time(1, 0), time(5, 0)))
    inv = inventory()
    sunday_2am = datetime(2025, 6, 8, 2, 0, tzinfo=UTC)
    hosts = ["web01", "db01"]
    assert outside_maintenance([sunday], inv, hosts, sunday_2am, sunday_2am + timedelta(hours=1)) == []
    assert outside_maintenance([sunday], inv, hosts, sunday_2am,
                               sunday_2am + timedelta(hours=4)) == ["web01"]
    assert outside_maintenance([sunday], inv, hosts, NOW, NOW + timedelta(hours=1)) == ["web01"]


def test_conflicts_need_a_shared_host_and_overlapping_windows() -> None:
    a = change("CHG-1", ("web01", "web02"), NOW, 60)
    b = change("CHG-2", ("web02",), NOW + timedelta(minutes=30), 60)
    c = change("CHG-3", ("db01",), NOW, 60)  # no shared host
    d = change("CHG-4", ("web01",), NOW + timedelta(minutes=60), 30)  # starts when CHG-1 ends
    e = change("CHG-5", ("web01",), NOW, 60, state="authorize")  # not approved yet
    conflicts = find_conflicts([d, c, b, a, e])
    assert [(x.first, x.second, x.hosts) for x in conflicts] == [("CHG-1", "CHG-2", ("web02",))]
    assert conflicts[0].start == NOW + timedelta(minutes=30)
    assert conflicts[0].end == NOW + timedelta(minutes=60)
    assert "CHG-1 and CHG-2 overlap on web02" in conflicts[0].describe()
    # Asked before scheduling: the change counts as scheduled, itself excluded.
    assert [(x.first, x.second, x.hosts) for x in conflicts_with(e, [a, b, c, d, e])] == [
        ("CHG-1", "CHG-5", ("web01",))]


def test_active_changes_cover_every_host_inside_the_window() -> None:
    a = change("CHG-1", ("web01", "web02"), NOW - timedelta(minutes=10), 20)
    b = change("CHG-2", ("web01",), NOW - timedelta(minutes=10), 20, state="implement")
    later = change("CHG-3", ("web01",), NOW + timedelta(minutes=10), 20)
    draft = change("CHG-4", ("web01",), NOW - timedelta(minutes=10), 20, state="authorize")
    changes = [later, b, a, draft]
    assert [c.ref for c in active_changes(changes, ["web01"], NOW)] == ["CHG-1", "CHG-2"]
    assert [c.ref for c in active_changes(changes, ["web01", "web02"], NOW)] == ["CHG-1"]
    assert active_changes(changes, ["db01"], NOW) == []
    assert active_changes(changes, ["web01"], NOW + timedelta(minutes=10)) == [later]
    assert time_left(a, NOW) == timedelta(minutes=10)
    assert time_left(later, NOW) is None
    assert not a.is_active(NOW + timedelta(minutes=10))  # the end is exclusive


def test_upcoming_lists_changes_and_windows_and_marks_conflicts() -> None:
    a = change("CHG-1", ("web01",), NOW + timedelta(hours=1), 60)
    b = change("CHG-2", ("web01",), NOW + timedelta(hours=1, minutes=30), 60)
    far = change("CHG-3", ("db01",), NOW + timedelta(days=30), 60)
    rules = [WindowRule("sat", "maintenance", "all", weekly=WeeklyRule((5,), time(1), time(3)))]
    entries = upcoming([a, b, far], rules, NOW, NOW + timedelta(days=2))
    assert [(e.kind, e.name, e.conflict) for e in entries] == [
        ("change", "CHG-1", True), ("change", "CHG-2", True), ("maintenance", "sat", False)]


def test_clock_and_weekday_parsing() -> None:
    assert parse_clock("07:30") == time(7, 30)
    assert parse_clock("24:00") == time(0, 0)
    assert parse_weekday("Saturday") == 5 and parse_weekday("sun") == 6
    for bad in ("7", "25:00", "12:5", "ab:cd"):
        with pytest.raises(ValueError):
            parse_clock(bad)
    with pytest.raises(ValueError):
        parse_weekday("monkey")


# -- the changes config section ------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "itop.yaml"
    path.write_text(text)
    return path


def test_config_section_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, """\
changes:
  allow_self_approval: true
  require_backup_hours: 24
  emergency_window_minutes: 30
  blackouts:
    - name: year-end
      hosts: status:production
      start: 2025-12-20T00:00:00Z
      end: 2026-01-05
    - name: payroll
      hosts: db
      weekly: {days: [fri], start: 18:00, end: 02:00}
  maintenance_windows:
    - name: sunday
      weekly: {days: [sun, sat], start: "01:00", end: "05:00"}
  templates:
    restart-web:
      title: Restart the web servers
      hosts: web
      outage: false
      impact: a few seconds of errors
      backout_plan: start it again
      risk: moderate
      duration_minutes: 30
      variables: {service: nginx, force: true}
""")
    changes = load_settings(path, tmp_path / "data").changes
    assert changes.allow_self_approval and changes.require_backup_hours == 24
    assert changes.emergency_window_minutes == 30
    year_end, payroll = changes.blackouts
    assert (year_end.start, year_end.end) == (datetime(2025, 12, 20, tzinfo=UTC),
                                              datetime(2026, 1, 5, tzinfo=UTC))
    assert payroll.weekly == WeeklyRule((4,), time(18, 0), time(2, 0))  # unquoted 18:00 too
    assert changes.maintenance_windows[0].weekly == WeeklyRule((5, 6), time(1), time(5))
    assert changes.maintenance_windows[0].hosts == "all"
    template = changes.templates["restart-web"]
    assert (template.title, template.hosts, template.outage, template.duration_minutes) == (
        "Restart the web servers", "web", False, 30)
    assert template.variables == {"service": "nginx", "force": "true"}


@pytest.mark.parametrize(("body", "line", "field", "words"), [
    ("changes:\n  allow_self_aproval: true\n", 2, "changes.allow_self_aproval",
     "did you mean 'allow_self_approval'"),
    ("changes:\n  blackouts:\n    - hosts: web\n      start: 2025-01-01\n      end: 2025-01-02\n",
     3, "changes.blackouts[0].name", "is required"),
    ("changes:\n  blackouts:\n    - name: x\n      start: 2025-01-02\n      end: 2025-01-01\n",
     3, "changes.blackouts[0].end", "must be after start"),
    ("changes:\n  blackouts:\n    - name: x\n      start: soon\n      end: 2025-01-01\n",
     4, "changes.blackouts[0].start", "ISO 8601"),
    ("changes:\n  blackouts:\n    - name: x\n      weekly: {days: [fry], start: '1:00', end: '2:00'}\n",
     4, "changes.blackouts[0].weekly.days[0]", "expected a weekday"),
    ("changes:\n  maintenance_windows:\n    - name: x\n      hosts: 'web:&'\n      weekly: {days: [mon], start: '01:00', end: '02:00'}\n",
     4, "changes.maintenance_windows[0].hosts", "must be followed"),
    ("changes:\n  blackouts:\n    - name: x\n", 3, "changes.blackouts[0]", "needs start and end, or weekly"),
    ("changes:\n  templates:\n    t1:\n      hosts: web\n", 4, "changes.templates.t1.title",
     "is required"),
    ("changes:\n  templates:\n    t1:\n      title: T\n      risk: extreme\n", 5,
     "changes.templates.t1.risk", "must be one of low, moderate, high"),
])
def test_config_errors_name_file_line_and_field(
    tmp_path: Path, body: str, line: int, field: str, words: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_settings(path, tmp_path / "data")
    assert (error.value.path, error.value.line, error.value.field) == (path, line, field)
    assert words in error.value.message


# -- the rules applied by the workflow ---------------------------------------------------------


@pytest.fixture
def workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from itop_tui.ops.change_workflow import ChangeWorkflow
    from itop_tui.services.context import Services

    config = write(tmp_path, """\
roles: {alice: operator, bob: approver}
changes:
  blackouts:
    - name: freeze
      hosts: tag:frozen
      start: 2025-06-06T13:00:00Z
      end: 2025-06-09T00:00:00Z
  maintenance_windows:
    - name: nights
      hosts: web
      weekly: {days: [mon, tue, wed, thu, fri, sat, sun], start: "20:00", end: "06:00"}
""")
    settings = load_settings(config, tmp_path / "data")
    flows = {}
    for login in ("alice", "bob"):
        monkeypatch.setenv("LOGNAME", login)
        monkeypatch.setenv("USER", login)
        services = Services.open(settings)
        if login == "alice":
            services.inventory.upsert_hosts(list(inventory().hosts.values()))
        flows[login] = ChangeWorkflow(services, clock=lambda: NOW)
    return flows


def approved(flows, hosts: str, change_type: str = "normal"):
    from itop_tui.ops.change_workflow import ChangeSpec

    alice, bob = flows["alice"], flows["bob"]
    change = alice.create(ChangeSpec(
        type=change_type, title="t", description="d", justification="j", hosts=hosts,
        impact="i", outage=False, backout_plan="b"))
    change = alice.submit(change.ref)
    if change.state == "assess":
        change = bob.assess(change.ref)
    return change


def test_scheduling_in_a_blackout_is_refused_except_for_emergencies(workflow) -> None:
    alice, bob = workflow["alice"], workflow["bob"]
    change = approved(workflow, "web02")
    bob.approve(change.ref)
    with pytest.raises(ChangeRefused) as refused:
        alice.schedule(change.ref, NOW + timedelta(hours=2), NOW + timedelta(hours=3))
    assert refused.value.missing_field == "window"
    assert "freeze" in refused.value.reason and "web02" in refused.value.reason
    # Before the blackout starts it is fine.
    scheduled = alice.schedule(change.ref, NOW, NOW + timedelta(hours=1))
    assert scheduled.state == "scheduled"
    events = [e for e in alice.services.audit.events() if e.action == "change.schedule"]
    assert [e.result for e in events] == ["refused", "ok"]
    assert events[0].detail["missing"] == "window"

    emergency = approved(workflow, "web02", "emergency")
    assert emergency.state == "authorize"
    approved_now = workflow["bob"].approve(emergency.ref)
    assert approved_now.state == "scheduled" and approved_now.is_active(NOW)
    # The emergency window reaches into the blackout: allowed, and written down.
    assert "freeze" in approved_now.work_log[-1].detail.get("blackout", "")


def test_conflicts_and_maintenance_windows_are_flagged_not_refused(workflow) -> None:
    alice, bob = workflow["alice"], workflow["bob"]
    first = approved(workflow, "web01")
    bob.approve(first.ref)
    alice.schedule(first.ref, NOW, NOW + timedelta(hours=1))
    second = approved(workflow, "web01:db01")
    bob.approve(second.ref)
    scheduled = alice.schedule(second.ref, NOW + timedelta(minutes=30), NOW + timedelta(hours=1))
    assert scheduled.state == "scheduled"
    warnings = alice.warnings(scheduled)
    assert any(w.startswith(f"conflict: {first.ref} and {second.ref} overlap on web01")
               for w in warnings), warnings
    assert "outside the maintenance windows of web01" in warnings
    assert [(c.first, c.second) for c in alice.all_conflicts()] == [(first.ref, second.ref)]


# -- the backup rule, checked when a change is implemented -------------------------------------


def test_backup_rule_refuses_implementing_without_a_fresh_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from itop_tui.ops.change_workflow import ChangeSpec, ChangeWorkflow
    from itop_tui.services.context import Services

    config = write(tmp_path, "roles: {alice: operator, bob: approver}\n"
                             "changes: {require_backup_hours: 24}\n")
    settings = load_settings(config, tmp_path / "data")
    backups = {"web01": NOW - timedelta(hours=2), "web02": NOW - timedelta(hours=30)}
    flows = {}
    for login in ("alice", "bob"):
        monkeypatch.setenv("LOGNAME", login)
        monkeypatch.setenv("USER", login)
        services = Services.open(settings)
        if login == "alice":
            services.inventory.upsert_hosts(list(inventory().hosts.values()))
        flows[login] = ChangeWorkflow(services, clock=lambda: NOW,
                                      last_good_backup=lambda host: backups.get(host.name))
    alice, bob = flows["alice"], flows["bob"]
    change = alice.create(ChangeSpec(title="t", description="d", justification="j",
                                     hosts="web01:web02:db01", impact="i", outage=False,
                                     backout_plan="b", start=NOW, end=NOW + timedelta(hours=1)))
    alice.submit(change.ref)
    bob.assess(change.ref)
    bob.approve(change.ref)
    alice.schedule(change.ref)
    statuses = {b.host: b.last_good for b in alice.backup_status(alice.get(change.ref))}
    assert statuses == {"web01": NOW - timedelta(hours=2), "web02": NOW - timedelta(hours=30),
                        "db01": None}

    with pytest.raises(ChangeRefused) as refused:
        alice.act(change.ref, "implement")
    assert refused.value.missing_field == "backup"
    assert "web02 (2025-06-05T06:00:00Z), db01 (none)" in refused.value.reason
    assert "web01" not in refused.value.reason
    # Without any backup capability the rule cannot be checked: refused too.
    alice.last_good_backup = None
    with pytest.raises(ChangeRefused, match="no backup capability is available"):
        alice.act(change.ref, "implement")
    # Fresh backups everywhere: allowed.
    backups.update(web02=NOW - timedelta(hours=1), db01=NOW)
    alice.last_good_backup = lambda host: backups.get(host.name)
    assert alice.act(change.ref, "implement").state == "implement"
