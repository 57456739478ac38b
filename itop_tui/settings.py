"""YAML configuration validated into typed settings.

``load_settings`` finds the config file, parses it with :func:`yaml.compose`
so every node keeps its line number, and checks every key, type and range
against a small schema. Any problem raises :class:`ConfigError`, whose text is
``FILE:LINE: field.path: message`` so a person can go straight to the line.

Relative paths in a config file are taken relative to that file's directory;
``~`` is expanded.

The ``metrics`` section becomes :class:`MetricsSettings`; the ``thresholds``
section is kept as plain data (its format is described in
:mod:`itop_tui.domain.thresholds`) and checked here, at load time, so a bad
threshold is reported with its line before anything starts. The monitor's
own configuration is built from these fields in
:mod:`itop_tui.ops.monitor_settings` (settings depend on the domain only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

if TYPE_CHECKING:
    # PyYAML and the domain modules that check each section are imported
    # when a config file is read (and then only for the sections it has):
    # every command and the TUI import this module, and without a config
    # file they would only delay the start.
    import yaml

    from itop_tui.domain.backup import BackupJob, Retention, VerifyPolicy
    from itop_tui.domain.change import ChangeTemplate
    from itop_tui.domain.change_windows import WeeklyRule, WindowRule

ROLES = ("viewer", "trainee", "operator", "approver", "admin")
HOST_KEY_POLICIES = ("strict", "accept-new")
CONFIG_ENV = "ITOP_CONFIG"
DATA_DIR_ENV = "ITOP_DATA_DIR"
CONFIG_FILE_NAME = "itop.yaml"
APP_NAME = "itop"
# YAML nested deeper than this in the thresholds section is refused (a
# recursive anchor would otherwise never end).
MAX_THRESHOLD_DEPTH = 16


@dataclass
class SSHSettings:
    """How itop connects to hosts over SSH (ARCHITECTURE.md section 6)."""

    host_key_policy: str = "strict"  # strict | accept-new
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    max_concurrent_handshakes: int = 10
    connect_retries: int = 3
    config_files: list[Path] = field(default_factory=lambda: [Path("~/.ssh/config").expanduser()])
    known_hosts_files: list[Path] = field(
        default_factory=lambda: [Path("~/.ssh/known_hosts").expanduser()]
    )
    identity_files: list[Path] = field(default_factory=list)
    use_agent: bool = True


@dataclass
class MetricsSettings:
    """Live metrics collection (the ``metrics`` section; issue 3).

    ``interval`` seconds between samples; ``df_every_seconds`` between
    filesystem readings; ``retention_days`` of one-minute rollups kept in
    SQLite; a host is ``stale`` after ``stale_after_intervals`` intervals
    without a sample; ``history_seconds`` of samples kept in memory per host.
    """

    interval: float = 2.0
    df_every_seconds: float = 30.0
    retention_days: float = 30.0
    stale_after_intervals: float = 3.0
    history_seconds: float = 3600.0


@dataclass
class ChangeSettings:
    """The change process (the ``changes`` section; issue 5).

    ``allow_self_approval`` lets a requester approve their own change (the
    approval is marked on the change). ``require_backup_hours``: implement
    only when every host has a good backup younger than this (0: off).
    ``emergency_window_minutes``: how long an emergency change's window stays
    open from its approval. ``blackouts`` and ``maintenance_windows`` are
    :class:`WindowRule` lists; ``templates`` the standard changes by name.
    """

    allow_self_approval: bool = False
    require_backup_hours: float = 0.0
    emergency_window_minutes: float = 240.0
    blackouts: list[WindowRule] = field(default_factory=list)
    maintenance_windows: list[WindowRule] = field(default_factory=list)
    templates: dict[str, ChangeTemplate] = field(default_factory=dict)

    @property
    def windows(self) -> list[WindowRule]:
        """Blackouts and maintenance windows together."""
        return [*self.blackouts, *self.maintenance_windows]


@dataclass
class BackupSettings:
    """Backup jobs defined in the config file (the ``backups`` section; issue 6).

    ``destination_root`` is where the tar method writes archives, each job
    in its own directory below it, unless the job names a ``destination``;
    None means ``<data_dir>/backups``. ``jobs`` are synced into the store by
    name whenever itop opens its backups.
    """

    destination_root: Path | None = None
    jobs: list[BackupJob] = field(default_factory=list)


@dataclass
class Settings:
    """Everything itop is configured with.

    ``thresholds`` is the ``thresholds`` section as plain data, ``{}`` for
    the built-in limits (see :mod:`itop_tui.domain.thresholds`).
    """

    data_dir: Path
    config_path: Path | None = None
    ssh: SSHSettings = field(default_factory=SSHSettings)
    forks: int = 50
    command_timeout: float = 60.0
    output_limit: int = 64 * 1024
    roles: dict[str, str] = field(default_factory=dict)
    default_role: str = "operator"
    theme: str = "textual-dark"
    inventory_sources: list[Path] = field(default_factory=list)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    thresholds: dict[str, Any] = field(default_factory=dict)
    changes: ChangeSettings = field(default_factory=ChangeSettings)
    backups: BackupSettings = field(default_factory=BackupSettings)

    @property
    def backup_root(self) -> Path:
        """Where tar archives go by default: ``backups.destination_root`` or ``<data_dir>/backups``."""
        return self.backups.destination_root or self.data_dir / "backups"

    @property
    def known_hosts_path(self) -> Path:
        """itop's own known_hosts, where keys trusted through itop are stored."""
        return self.data_dir / "known_hosts"

    def role_for(self, login: str) -> str:
        """The role of ``login``: its entry in ``roles``, else ``default_role``."""
        return self.roles.get(login, self.default_role)

    @property
    def config_label(self) -> str:
        """Where the settings came from, for headers and messages."""
        return str(self.config_path) if self.config_path else "embedded default"


class ConfigError(Exception):
    """The configuration is unusable. ``str()`` is ``FILE:LINE: field: message``."""

    def __init__(self, path: Path | None, line: int | None, field_path: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field_path
        self.message = message
        where = str(path) if path is not None else "<config>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {field_path}: {message}")


def find_config_path(config_path: Path | None = None) -> Path | None:
    """The config file to read, or None to run on the embedded default.

    Order: the explicit path, ``$ITOP_CONFIG``, ``./itop.yaml``, then
    ``itop.yaml`` in the platform's user config dir. An explicit or
    environment path must exist; the other two are used only when present.
    """
    if config_path is not None:
        return Path(config_path).expanduser()
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    for candidate in (
        Path.cwd() / CONFIG_FILE_NAME,
        Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_FILE_NAME,
    ):
        if candidate.is_file():
            return candidate
    return None


def load_settings(config_path: Path | None = None, data_dir: Path | None = None) -> Settings:
    """Find, read and validate the configuration.

    ``data_dir`` wins over ``$ITOP_DATA_DIR``, which wins over the config's
    ``data_dir``, which wins over the platform's user data dir.
    """
    path = find_config_path(config_path)
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_config(path)
    env_data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir is not None:
        chosen = Path(data_dir).expanduser()
    elif env_data_dir:
        chosen = Path(env_data_dir).expanduser()
    elif "data_dir" in values:
        chosen = values.pop("data_dir")
    else:
        chosen = Path(platformdirs.user_data_dir(APP_NAME))
    values.pop("data_dir", None)
    ssh_values = values.pop("ssh", {})
    metrics_values = values.pop("metrics", {})
    changes_values = values.pop("changes", {})
    backups_values = values.pop("backups", {})
    return Settings(
        data_dir=chosen.absolute(),
        config_path=path.absolute() if path is not None else None,
        ssh=SSHSettings(**ssh_values),
        metrics=MetricsSettings(**metrics_values),
        changes=ChangeSettings(**changes_values),
        backups=BackupSettings(**backups_values),
        **values,
    )


def _read_config(path: Path) -> dict[str, Any]:
    global yaml  # bound here for the reader's methods: only reading a file needs PyYAML
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "(file)", "config file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "(file)", "is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, "(file)", f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(path, None, "(file)", f"cannot read: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(path, line, "(yaml)", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "(yaml)", f"invalid YAML: {exc}") from None
    if root is None or _is_null(root):
        return {}
    reader = _ConfigReader(path)
    return reader.top_level(root)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _kind(node: yaml.Node) -> str:
    """A short word for what a node holds, for 'expected X, got Y' messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
             "null": "nothing (null)"}
    return f"{names.get(tag, tag)} ({node.value!r})"


_Handler = Callable[["yaml.Node", str], Any]
# Keys holding a mapping: left empty (``ssh:``) they mean "all defaults".
_SECTIONS = frozenset({"ssh", "run", "roles", "ui", "inventory", "metrics", "thresholds",
                       "changes", "templates", "blackouts", "maintenance_windows",
                       "backups", "retention", "verify"})


class _ConfigReader:
    """Walks the composed YAML tree, converting and checking each field."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base_dir = path.absolute().parent
        self._constructor = yaml.SafeLoader("")

    def error(self, node: yaml.Node, field_path: str, message: str) -> ConfigError:
        return ConfigError(self.path, node.start_mark.line + 1, field_path, message)

    # -- structure --------------------------------------------------------

    def mapping(self, node: yaml.Node, field_path: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) entries of a mapping, keys checked unique."""
        if _is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, field_path, f"expected a mapping, got {_kind(node)}")
        seen: set[str] = set()
        entries: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:null":
                raise self.error(key_node, field_path or "(top level)", "keys must be names")
            key = str(key_node.value)
            full = f"{field_path}.{key}" if field_path else key
            if key in seen:
                raise self.error(key_node, full, "duplicate key")
            seen.add(key)
            entries.append((key, key_node, value_node))
        return entries

    def section(
        self, node: yaml.Node, field_path: str, handlers: dict[str, tuple[str, _Handler]]
    ) -> dict[str, Any]:
        """Apply ``handlers`` (key -> (attribute, converter)) to a mapping's entries."""
        result: dict[str, Any] = {}
        for key, key_node, value_node in self.mapping(node, field_path):
            full = f"{field_path}.{key}" if field_path else key
            if key not in handlers:
                raise self.error(key_node, full, _unknown_key_message(key, handlers))
            attribute, handler = handlers[key]
            if _is_null(value_node) and key not in _SECTIONS:
                raise self.error(
                    value_node, full, "has no value (remove the key to use the default)"
                )
            result[attribute] = handler(value_node, full)
        return result

    def top_level(self, node: yaml.Node) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, "(top level)", f"expected a mapping of settings, got {_kind(node)}")
        handlers: dict[str, tuple[str, _Handler]] = {
            "data_dir": ("data_dir", self.path_value),
            "ssh": ("ssh", self.ssh_section),
            "run": ("run", self.run_section),
            "roles": ("roles", self.roles_section),
            "default_role": ("default_role", self.choice(ROLES)),
            "ui": ("ui", self.ui_section),
            "inventory": ("inventory", self.inventory_section),
            "metrics": ("metrics", self.metrics_section),
            "thresholds": ("thresholds", self.thresholds_section),
            "changes": ("changes", self.changes_section),
            "backups": ("backups", self.backups_section),
        }
        values = self.section(node, "", handlers)
        # Flatten sections onto the Settings field names (kept for compatibility).
        for nested in ("run", "ui", "inventory"):
            values.update(values.pop(nested, {}))
        return values

    def ssh_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        return self.section(node, field_path, {
            "host_key_policy": ("host_key_policy", self.choice(HOST_KEY_POLICIES)),
            "connect_timeout": ("connect_timeout", self.number(0.1, 3600)),
            "keepalive_interval": ("keepalive_interval", self.number(0, 3600)),
            "keepalive_count_max": ("keepalive_count_max", self.integer(1, 100)),
            "max_concurrent_handshakes": ("max_concurrent_handshakes", self.integer(1, 1000)),
            "connect_retries": ("connect_retries", self.integer(0, 20)),
            "config_files": ("config_files", self.path_list),
            "known_hosts_files": ("known_hosts_files", self.path_list),
            "identity_files": ("identity_files", self.path_list),
            "use_agent": ("use_agent", self.boolean),
        })

    def run_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        return self.section(node, field_path, {
            "forks": ("forks", self.integer(1, 1000)),
            "timeout": ("command_timeout", self.number(0.1, 7 * 24 * 3600)),
            "output_limit": ("output_limit", self.integer(1024, 64 * 1024 * 1024)),
        })

    def ui_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        return self.section(node, field_path, {"theme": ("theme", self.word)})

    def inventory_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        return self.section(node, field_path, {"sources": ("inventory_sources", self.path_list)})

    def metrics_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        from itop_tui.domain.procfs import MIN_INTERVAL

        return self.section(node, field_path, {
            "interval": ("interval", self.number(MIN_INTERVAL, 3600)),
            "df_every_seconds": ("df_every_seconds", self.number(1, 86400)),
            "retention_days": ("retention_days", self.number(0.01, 36500)),
            "stale_after_intervals": ("stale_after_intervals", self.number(1, 1000)),
            "history_seconds": ("history_seconds", self.number(60, 86400)),
        })

    def thresholds_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        """The thresholds as plain data, checked with the domain's own validation.

        Its errors name a dotted path (``thresholds.hosts.web01.cpu_percent``);
        the line is that of the deepest key of the path found in the file.
        """
        from itop_tui.domain.thresholds import ThresholdConfigError, validate_threshold_config

        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, field_path, f"expected a mapping, got {_kind(node)}")
        lines: dict[str, int] = {field_path: node.start_mark.line + 1}
        config = self.plain(node, field_path, lines, 0)
        try:
            validate_threshold_config(config)
        except ThresholdConfigError as exc:
            raise ConfigError(self.path, _line_of(exc.path, lines), exc.path, exc.message) from None
        return dict(config)

    def plain(self, node: yaml.Node, field_path: str, lines: dict[str, int], depth: int) -> Any:
        """A node as Python data; ``lines`` gets the line of every key's path."""
        if depth > MAX_THRESHOLD_DEPTH:
            raise self.error(node, field_path, "nested too deeply")
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key, key_node, value_node in self.mapping(node, field_path):
                full = f"{field_path}.{key}"
                lines[full] = key_node.start_mark.line + 1
                result[key] = self.plain(value_node, full, lines, depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                full = f"{field_path}[{i}]"
                lines[full] = item.start_mark.line + 1
                items.append(self.plain(item, full, lines, depth + 1))
            return items
        return self.scalar(node, field_path, "a value")

    # -- changes ------------------------------------------------------------

    def changes_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        return self.section(node, field_path, {
            "allow_self_approval": ("allow_self_approval", self.boolean),
            "require_backup_hours": ("require_backup_hours", self.number(0, 24 * 365)),
            "emergency_window_minutes": ("emergency_window_minutes", self.number(1, 7 * 24 * 60)),
            "blackouts": ("blackouts", self.window_list("blackout")),
            "maintenance_windows": ("maintenance_windows", self.window_list("maintenance")),
            "templates": ("templates", self.templates_section),
        })

    def selector(self, node: yaml.Node, field_path: str) -> str:
        from itop_tui.domain.selectors import SelectorError, parse_selector

        text = self.word(node, field_path)
        try:
            parse_selector(text)
        except SelectorError as exc:
            raise self.error(node, field_path, str(exc)) from None
        return text

    def moment(self, node: yaml.Node, field_path: str) -> datetime:
        """An ISO 8601 time (YAML may have read it as a timestamp already); UTC if no offset."""
        value = self.scalar(node, field_path, "an ISO 8601 time")
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, date):
            parsed = datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise self.error(
                    node, field_path,
                    f"expected an ISO 8601 time such as 2025-12-20T18:00:00Z, got {value!r}",
                ) from None
        else:
            raise self.error(node, field_path, f"expected an ISO 8601 time, got {_kind(node)}")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    def clock(self, node: yaml.Node, field_path: str) -> Any:
        from itop_tui.domain.change_windows import parse_clock

        # The raw text: unquoted 18:00 would be read by YAML 1.1 as the number 1080.
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, field_path, f"expected a time of day HH:MM, got {_kind(node)}")
        try:
            return parse_clock(str(node.value))
        except ValueError as exc:
            raise self.error(node, field_path, str(exc)) from None

    def weekly(self, node: yaml.Node, field_path: str) -> WeeklyRule:
        from itop_tui.domain.change_windows import WeeklyRule

        values = self.section(node, field_path, {
            "days": ("days", self.weekdays),
            "start": ("start", self.clock),
            "end": ("end", self.clock),
        })
        for key in ("days", "start", "end"):
            if key not in values:
                raise self.error(node, f"{field_path}.{key}", "is required")
        return WeeklyRule(days=values["days"], start=values["start"], end=values["end"])

    def weekdays(self, node: yaml.Node, field_path: str) -> tuple[int, ...]:
        from itop_tui.domain.change_windows import parse_weekday

        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.error(node, field_path, "expected a list of weekdays such as [sat, sun]")
        days: list[int] = []
        for i, item in enumerate(node.value):
            word = self.word(item, f"{field_path}[{i}]")
            try:
                days.append(parse_weekday(word))
            except ValueError as exc:
                raise self.error(item, f"{field_path}[{i}]", str(exc)) from None
        return tuple(sorted(set(days)))

    def window_list(self, kind: str) -> _Handler:
        def convert(node: yaml.Node, field_path: str) -> list[WindowRule]:
            if _is_null(node):
                return []
            if not isinstance(node, yaml.SequenceNode):
                raise self.error(node, field_path, f"expected a list of windows, got {_kind(node)}")
            rules: list[WindowRule] = []
            names: set[str] = set()
            for i, item in enumerate(node.value):
                rule = self.window(item, f"{field_path}[{i}]", kind)
                if rule.name in names:
                    raise self.error(item, f"{field_path}[{i}].name", f"duplicate name {rule.name!r}")
                names.add(rule.name)
                rules.append(rule)
            return rules

        return convert

    def window(self, node: yaml.Node, field_path: str, kind: str) -> WindowRule:
        from itop_tui.domain.change_windows import WindowRule

        values = self.section(node, field_path, {
            "name": ("name", self.word),
            "hosts": ("hosts", self.selector),
            "start": ("start", self.moment),
            "end": ("end", self.moment),
            "weekly": ("weekly", self.weekly),
        })
        if "name" not in values:
            raise self.error(node, f"{field_path}.name", "is required")
        absolute = "start" in values or "end" in values
        if absolute and "weekly" in values:
            raise self.error(node, f"{field_path}.weekly",
                             "give either start and end, or weekly, not both")
        if not absolute and "weekly" not in values:
            raise self.error(node, field_path, "needs start and end, or weekly")
        if absolute:
            for key in ("start", "end"):
                if key not in values:
                    raise self.error(node, f"{field_path}.{key}", "is required with "
                                     f"{'end' if key == 'start' else 'start'}")
            if values["end"] <= values["start"]:
                raise self.error(node, f"{field_path}.end", "must be after start")
        return WindowRule(
            name=values["name"], kind=kind, hosts=values.get("hosts", "all"),
            start=values.get("start"), end=values.get("end"), weekly=values.get("weekly"),
        )

    def templates_section(self, node: yaml.Node, field_path: str) -> dict[str, ChangeTemplate]:
        templates: dict[str, ChangeTemplate] = {}
        for name, _key_node, value_node in self.mapping(node, field_path):
            templates[name] = self.template(name, value_node, f"{field_path}.{name}")
        return templates

    def template(self, name: str, node: yaml.Node, field_path: str) -> ChangeTemplate:
        from itop_tui.domain.change import RISKS, ChangeTemplate

        values = self.section(node, field_path, {
            "title": ("title", self.word),
            "description": ("description", self.word),
            "justification": ("justification", self.word),
            "hosts": ("hosts", self.selector),
            "impact": ("impact", self.word),
            "outage": ("outage", self.boolean),
            "implementation": ("implementation", self.word),
            "backout": ("backout", self.word),
            "backout_plan": ("backout_plan", self.word),
            "test_plan": ("test_plan", self.word),
            "risk": ("risk", self.choice(RISKS)),
            "duration_minutes": ("duration_minutes", self.integer(1, 7 * 24 * 60)),
            "variables": ("variables", self.string_map),
        })
        if "title" not in values:
            raise self.error(node, f"{field_path}.title", "is required")
        return ChangeTemplate(name=name, **values)

    def string_map(self, node: yaml.Node, field_path: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for key, _key_node, value_node in self.mapping(node, field_path):
            value = self.scalar(value_node, f"{field_path}.{key}", "a value")
            if isinstance(value, dict | list) or value is None:
                raise self.error(value_node, f"{field_path}.{key}",
                                 f"expected a string, got {_kind(value_node)}")
            result[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return result

    # -- backups ------------------------------------------------------------

    def backups_section(self, node: yaml.Node, field_path: str) -> dict[str, Any]:
        return self.section(node, field_path, {
            "destination_root": ("destination_root", self.path_value),
            "jobs": ("jobs", self.backup_jobs),
        })

    def backup_jobs(self, node: yaml.Node, field_path: str) -> list[BackupJob]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, field_path, f"expected a list of jobs, got {_kind(node)}")
        jobs: list[BackupJob] = []
        names: set[str] = set()
        for i, item in enumerate(node.value):
            job = self.backup_job(item, f"{field_path}[{i}]")
            if job.name in names:
                raise self.error(item, f"{field_path}[{i}].name", f"duplicate job name {job.name!r}")
            names.add(job.name)
            jobs.append(job)
        return jobs

    def backup_job(self, node: yaml.Node, field_path: str) -> BackupJob:
        """One job, checked by the domain's own validation; errors point at the field's line."""
        from itop_tui.domain.backup import COMPRESSIONS, METHODS, SSH_SCHEME, BackupJob
        from itop_tui.domain.models import ValidationError

        entries = {key: (key_node, value) for key, key_node, value in self.mapping(node, field_path)}
        method_node = entries.get("method", (None, None))[1]
        method = self.choice(METHODS)(method_node, f"{field_path}.method") if method_node else "tar"
        # A tar destination is a directory here (relative to this file) or
        # ssh://HOST/DIR on a backup host; a restic destination is a
        # repository as the host sees it. Only the first is rewritten.
        dest_node = entries.get("destination", (None, None))[1]
        on_backup_host = isinstance(dest_node, yaml.ScalarNode) and str(
            dest_node.value
        ).startswith(SSH_SCHEME)
        destination = self.path_text if method == "tar" and not on_backup_host else self.text
        values = self.section(node, field_path, {
            "name": ("name", self.word),
            "hosts": ("hosts", self.text),
            "method": ("method", self.choice(METHODS)),
            "sources": ("sources", self.text_list),
            "excludes": ("excludes", self.text_list),
            "destination": ("destination", destination),
            "password_file": ("password_file", self.text),
            "command": ("command", self.text),
            "compression": ("compression", self.choice(COMPRESSIONS)),
            "schedule": ("schedule", self.text),
            "retention": ("retention", self.retention_section),
            "verify": ("verify", self.verify_section),
            "rpo_hours": ("rpo_hours", self.number(0.01, 24 * 366 * 10)),
            "pre_command": ("pre_command", self.text),
            "post_command": ("post_command", self.text),
            "timeout": ("timeout", self.number(1, 7 * 24 * 3600)),
            "enabled": ("enabled", self.boolean),
        })
        for required in ("name", "hosts"):
            if required not in values:
                raise self.error(node, f"{field_path}.{required}", "is required")
        job = BackupJob(origin="config", **values)
        try:
            job.validate()
        except ValidationError as exc:
            top = exc.field.split(".", 1)[0].split("[", 1)[0]
            where = entries.get(top, (node, node))[1]
            where = self._nested_node(where, exc.field[len(top):])
            raise self.error(where, f"{field_path}.{exc.field}", exc.message) from None
        return job

    def _nested_node(self, node: yaml.Node, rest: str) -> yaml.Node:
        """The node at ``rest`` (``[1]`` or ``.keep_daily``) below ``node``, else ``node``."""
        if rest.startswith("[") and isinstance(node, yaml.SequenceNode):
            index = rest[1:].split("]", 1)[0]
            if index.isdigit() and int(index) < len(node.value):
                return node.value[int(index)]
        if rest.startswith(".") and isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if str(key_node.value) == rest[1:]:
                    return value_node
        return node

    def retention_section(self, node: yaml.Node, field_path: str) -> Retention:
        from itop_tui.domain.backup import Retention

        count = self.integer(0, 100_000)
        return Retention(**self.section(node, field_path, {
            "keep_last": ("keep_last", count),
            "keep_daily": ("keep_daily", count),
            "keep_weekly": ("keep_weekly", count),
            "keep_monthly": ("keep_monthly", count),
        }))

    def verify_section(self, node: yaml.Node, field_path: str) -> VerifyPolicy:
        from itop_tui.domain.backup import VERIFY_SCOPES, VERIFY_WHEN, VerifyPolicy

        return VerifyPolicy(**self.section(node, field_path, {
            "when": ("when", self.choice(VERIFY_WHEN)),
            "scope": ("scope", self.choice(VERIFY_SCOPES)),
            "sample_percent": ("sample_percent", self.number(0.01, 100)),
            "schedule": ("schedule", self.text),
        }))

    def text(self, node: yaml.Node, field_path: str) -> str:
        """A non-empty string kept as written (commands, selectors, cron)."""
        value = self.scalar(node, field_path, "a string")
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, field_path, f"expected a non-empty string, got {_kind(node)}")
        return value

    def text_list(self, node: yaml.Node, field_path: str) -> list[str]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, field_path, f"expected a list of strings, got {_kind(node)}")
        return [self.text(item, f"{field_path}[{i}]") for i, item in enumerate(node.value)]

    def path_text(self, node: yaml.Node, field_path: str) -> str:
        return str(self.path_value(node, field_path))

    def roles_section(self, node: yaml.Node, field_path: str) -> dict[str, str]:
        roles: dict[str, str] = {}
        check_role = self.choice(ROLES)
        for login, _key_node, value_node in self.mapping(node, field_path):
            roles[login] = check_role(value_node, f"{field_path}.{login}")
        return roles

    # -- scalars ----------------------------------------------------------

    def scalar(self, node: yaml.Node, field_path: str, expected: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, field_path, f"expected {expected}, got {_kind(node)}")
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(node, field_path, f"unreadable value: {exc}") from None

    def integer(self, low: int, high: int) -> _Handler:
        def convert(node: yaml.Node, field_path: str) -> int:
            value = self.scalar(node, field_path, "an integer")
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(node, field_path, f"expected an integer, got {_kind(node)}")
            if not low <= value <= high:
                raise self.error(node, field_path, f"must be between {low} and {high}, got {value}")
            return value

        return convert

    def number(self, low: float, high: float) -> _Handler:
        def convert(node: yaml.Node, field_path: str) -> float:
            value = self.scalar(node, field_path, "a number")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(node, field_path, f"expected a number, got {_kind(node)}")
            if not low <= value <= high:
                raise self.error(node, field_path, f"must be between {low:g} and {high:g}, got {value}")
            return float(value)

        return convert

    def boolean(self, node: yaml.Node, field_path: str) -> bool:
        value = self.scalar(node, field_path, "true or false")
        if not isinstance(value, bool):
            raise self.error(node, field_path, f"expected true or false, got {_kind(node)}")
        return value

    def word(self, node: yaml.Node, field_path: str) -> str:
        value = self.scalar(node, field_path, "a string")
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, field_path, f"expected a non-empty string, got {_kind(node)}")
        return value.strip()

    def choice(self, choices: tuple[str, ...]) -> _Handler:
        def convert(node: yaml.Node, field_path: str) -> str:
            value = self.scalar(node, field_path, f"one of {', '.join(choices)}")
            if not isinstance(value, str) or value not in choices:
                hint = _did_you_mean(str(value), choices)
                raise self.error(
                    node, field_path, f"must be one of {', '.join(choices)}, got {value!r}{hint}"
                )
            return value

        return convert

    def path_value(self, node: yaml.Node, field_path: str) -> Path:
        value = self.scalar(node, field_path, "a path")
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, field_path, f"expected a path, got {_kind(node)}")
        path = Path(value.strip()).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def path_list(self, node: yaml.Node, field_path: str) -> list[Path]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, field_path, f"expected a list of paths, got {_kind(node)}")
        return [self.path_value(item, f"{field_path}[{i}]") for i, item in enumerate(node.value)]


def _line_of(field_path: str, lines: dict[str, int]) -> int | None:
    """The line of ``field_path``, or of its nearest parent found in ``lines``."""
    path = field_path
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            break
        path = path[:cut]
    return None


def _did_you_mean(word: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key_message(key: str, handlers: dict[str, Any]) -> str:
    hint = _did_you_mean(key, handlers)
    return f"unknown key{hint}; known keys: {', '.join(handlers)}"
