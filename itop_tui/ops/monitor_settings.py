"""The live monitor's configuration, built from the loaded settings.

Settings depend on the domain only, so the ``metrics`` and ``thresholds``
sections are turned into a :class:`MonitorConfig` here, in ops, for
``itop metrics``, ``itop collect`` and the Performance pane alike.
"""

from __future__ import annotations

import copy

from itop_tui.domain.thresholds import ThresholdConfigError
from itop_tui.ops.fleet_monitor import MonitorConfig, MonitorConfigError
from itop_tui.settings import ConfigError, Settings


def monitor_config(settings: Settings, *, interval: float | None = None) -> MonitorConfig:
    """The monitor configuration of ``settings``; ``interval`` overrides ``metrics.interval``.

    Settings read from a file were checked when loaded; settings built in
    code are checked here. Either way a bad value raises
    :class:`ConfigError` naming the config file and the field
    (``metrics.interval``, ``thresholds.hosts.web01.cpu_percent``...).
    """
    metrics = settings.metrics
    config = MonitorConfig(
        interval=metrics.interval if interval is None else interval,
        df_every_seconds=metrics.df_every_seconds,
        retention_days=metrics.retention_days,
        # The monitor must not share (and so see later changes of) the settings' dicts.
        thresholds=copy.deepcopy(settings.thresholds),
        stale_after_intervals=metrics.stale_after_intervals,
        history_seconds=metrics.history_seconds,
    )
    try:
        config.validate()
    except MonitorConfigError as exc:
        field = "--interval" if exc.field == "interval" and interval is not None else (
            f"metrics.{exc.field}"
        )
        raise ConfigError(settings.config_path, None, field, exc.message) from None
    except ThresholdConfigError as exc:
        raise ConfigError(settings.config_path, None, exc.path, exc.message) from None
    return config
