"""The ``metrics`` and ``thresholds`` sections: values, defaults, the monitor
configuration built from them, and errors naming file, line and field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from cli_helpers import isolate_config_lookup

from itop_tui.cli import main
from itop_tui.domain.metrics import METRIC_NAMES
from itop_tui.domain.thresholds import DEFAULT_THRESHOLDS, resolve_thresholds
from itop_tui.ops.fleet_monitor import MonitorConfig
from itop_tui.ops.monitor_settings import monitor_config
from itop_tui.settings import ConfigError, MetricsSettings, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "itop.example.yaml"


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ITOP_* variables and an empty cwd, so only the files written here count."""
    isolate_config_lookup(tmp_path, monkeypatch)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "itop.yaml"
    path.write_text(text)
    return path


def test_absent_sections_mean_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "run: {forks: 3}\n"))
    assert settings.metrics == MetricsSettings()
    assert settings.thresholds == {}
    config = monitor_config(settings)
    defaults = MonitorConfig()
    assert (config.interval, config.df_every_seconds, config.retention_days,
            config.stale_after_intervals, config.history_seconds) == (
        defaults.interval, defaults.df_every_seconds, defaults.retention_days,
        defaults.stale_after_intervals, defaults.history_seconds)
    assert config.thresholds == {}


def test_empty_sections_mean_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "metrics:\nthresholds:\n"))
    assert settings.metrics == MetricsSettings()
    assert settings.thresholds == {}


def test_values_reach_the_monitor_config(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "metrics:\n"
        "  interval: 0.5\n"
        "  df_every_seconds: 10\n"
        "  retention_days: 7\n"
        "  stale_after_intervals: 4\n"
        "  history_seconds: 600\n"
        "thresholds:\n"
        "  cpu_percent: {warning: 70, critical: 90, min_duration: 5}\n"
        "  swap_percent: null\n"
        "  groups:\n"
        "    db:\n"
        "      mem_percent: {warning: 92}\n"
        "  hosts:\n"
        "    build01:\n"
        "      cpu_percent: null\n"
    ))
    settings = load_settings(path)
    assert settings.metrics == MetricsSettings(0.5, 10.0, 7.0, 4.0, 600.0)
    config = monitor_config(settings)
    assert (config.interval, config.df_every_seconds, config.retention_days,
            config.stale_after_intervals, config.history_seconds) == (0.5, 10.0, 7.0, 4.0, 600.0)
    # The thresholds arrive as the domain reads them, per host and group.
    web = resolve_thresholds("web01", [], config.thresholds)
    assert (web["cpu_percent"].warning, web["cpu_percent"].critical,
            web["cpu_percent"].min_duration) == (70, 90, 5)
    assert "swap_percent" not in web
    assert resolve_thresholds("db1", ["db"], config.thresholds)["mem_percent"].warning == 92
    assert "cpu_percent" not in resolve_thresholds("build01", [], config.thresholds)
    # The monitor gets its own copy: changing it leaves the settings alone.
    config.thresholds["cpu_percent"]["warning"] = 1
    assert settings.thresholds["cpu_percent"]["warning"] == 70


def test_interval_override(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "metrics: {interval: 5}\n"))
    assert monitor_config(settings, interval=0.25).interval == 0.25
    assert monitor_config(settings).interval == 5


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("metrics:\n  interval: 0\n", 2, "metrics.interval", "between 0.05 and 3600, got 0"),
        ("metrics:\n  df_every_seconds: 2\n  intervall: 2\n", 3, "metrics.intervall",
         "did you mean 'interval'"),
        ("run: {}\nmetrics:\n  retention_days: forever\n", 3, "metrics.retention_days",
         "expected a number"),
        ("metrics:\n  stale_after_intervals: 0.5\n", 2, "metrics.stale_after_intervals",
         "between 1 and 1000"),
        ("metrics:\n  history_seconds: true\n", 2, "metrics.history_seconds",
         "expected a number"),
        ("metrics:\n  interval:\n", 2, "metrics.interval", "has no value"),
        ("metrics: 5\n", 1, "metrics", "expected a mapping"),
        ("thresholds: [1, 2]\n", 1, "thresholds", "expected a mapping"),
        ("thresholds:\n  cpu_percent:\n    warning: 99\n    critical: 90\n", 2,
         "thresholds.cpu_percent", "warning must not be above critical"),
        ("thresholds:\n  cpu_pct: {warning: 1}\n", 2, "thresholds.cpu_pct", "unknown metric"),
        ("thresholds:\n  cpu_percent: 80\n", 2, "thresholds.cpu_percent", "must be a mapping"),
        ("thresholds:\n  hosts:\n    web01:\n      mem_percent:\n        warn: 3\n", 5,
         "thresholds.hosts.web01.mem_percent.warn", "unknown field"),
        ("thresholds:\n  groups:\n    db:\n      mem_percent: {warning: high}\n", 4,
         "thresholds.groups.db.mem_percent.warning", "must be a number, got 'high'"),
        ("thresholds:\n  load1:\n    warning: 1\n    direction: sideways\n", 4,
         "thresholds.load1.direction", "'above' or 'below'"),
        ("thresholds:\n  hosts: [web01]\n", 2, "thresholds.hosts", "must be a mapping"),
        ("thresholds:\n  fs_max_percent: {warning: 1}\n  fs_max_percent: {warning: 2}\n", 3,
         "thresholds.fs_max_percent", "duplicate key"),
        ("thresholds:\n  procs: {min_duration: 5}\n", 2, "thresholds.procs",
         "needs a warning or a critical limit"),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    error = info.value
    assert (error.path, error.line, error.field) == (path, line, field)
    assert words in error.message
    assert str(error).startswith(f"{path}:{line}: {field}: ")


def test_a_recursive_anchor_is_refused_not_followed(tmp_path: Path) -> None:
    path = write(tmp_path, "thresholds:\n  hosts: &loop\n    web01: *loop\n")
    with pytest.raises(ConfigError, match="nested too deeply") as info:
        load_settings(path)
    assert info.value.line is not None


def test_check_config_exits_2_naming_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "thresholds:\n  groups:\n    db:\n      swap_percent: {critical: lots}\n")
    assert main(["check-config", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"itop: {path}:4: thresholds.groups.db.swap_percent.critical: ")
    assert "Traceback" not in stderr


def test_settings_built_in_code_are_checked_when_the_monitor_config_is_made() -> None:
    bad_interval = Settings(data_dir=Path("/x"), metrics=MetricsSettings(interval=0))
    with pytest.raises(ConfigError) as info:
        monitor_config(bad_interval)
    assert info.value.field == "metrics.interval"
    bad_threshold = Settings(data_dir=Path("/x"), thresholds={"mem_percent": {"warning": "x"}})
    with pytest.raises(ConfigError) as info:
        monitor_config(bad_threshold)
    assert info.value.field == "thresholds.mem_percent.warning"


def test_example_documents_every_metrics_key_with_its_default() -> None:
    tree = yaml.safe_load(EXAMPLE.read_text())
    assert tree["metrics"] == {
        f.name: f.default for f in dataclasses.fields(MetricsSettings)
    }
    assert tree["thresholds"] == {}


def test_example_threshold_comments_are_valid_and_match_the_built_in_limits(
    tmp_path: Path,
) -> None:
    # The commented lines under `thresholds: {}` are an example a person
    # uncomments: they must load, and the top level must say the truth.
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("thresholds: {}")
    block = ["thresholds:"]
    for text in lines[start + 1:]:
        if not text.startswith("#  "):
            break
        block.append(text[1:])
    assert len(block) > 5
    settings = load_settings(write(tmp_path, "\n".join(block) + "\n"))
    top = {m: e for m, e in settings.thresholds.items() if m not in ("groups", "hosts")}
    resolved = resolve_thresholds("", [], top, defaults={})
    assert resolved == {m: DEFAULT_THRESHOLDS[m] for m in top}
    assert set(top) == set(DEFAULT_THRESHOLDS)
    # The comment above the section lists every metric there is.
    head = start
    while lines[head - 1].startswith("#"):
        head -= 1
    comment = " ".join(lines[head:start])
    assert [name for name in METRIC_NAMES if name not in comment] == []
