"""Settings: lookup order, defaults, and errors naming file, line and field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from cli_helpers import isolate_config_lookup

from itop_tui.settings import (
    ConfigError,
    Settings,
    SSHSettings,
    find_config_path,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "itop.example.yaml"


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ITOP_* variables, an empty cwd (returned) and an empty user config dir."""
    return isolate_config_lookup(tmp_path, monkeypatch)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value


# -- lookup -----------------------------------------------------------------


def test_no_config_anywhere_gives_the_embedded_default(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.config_path is None
    assert settings.config_label == "embedded default"
    assert settings.data_dir == tmp_path / "xdg-data" / "itop"
    assert settings.forks == Settings(data_dir=Path("x")).forks
    assert settings.ssh.host_key_policy == "strict"


def test_lookup_order(tmp_path: Path, clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write(tmp_path / "xdg-config" / "itop" / "itop.yaml", "run: {forks: 4}\n")
    assert find_config_path() == user
    local = write(clean_environment / "itop.yaml", "run: {forks: 3}\n")
    assert find_config_path() == local
    env = write(tmp_path / "env.yaml", "run: {forks: 2}\n")
    monkeypatch.setenv("ITOP_CONFIG", str(env))
    assert find_config_path() == env
    explicit = write(tmp_path / "explicit.yaml", "run: {forks: 1}\n")
    assert load_settings(explicit).forks == 1
    assert load_settings().forks == 2
    monkeypatch.delenv("ITOP_CONFIG")
    assert load_settings().forks == 3
    local.unlink()
    assert load_settings().forks == 4


def test_missing_explicit_or_env_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    assert "config file not found" in str(error_of(missing))
    monkeypatch.setenv("ITOP_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_settings()


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "conf" / "itop.yaml", "data_dir: store\n")
    # Relative to the config file's directory.
    assert load_settings(config).data_dir == tmp_path / "conf" / "store"
    monkeypatch.setenv("ITOP_DATA_DIR", str(tmp_path / "env-data"))
    assert load_settings(config).data_dir == tmp_path / "env-data"
    assert load_settings(config, tmp_path / "cli-data").data_dir == tmp_path / "cli-data"
    assert load_settings(config, tmp_path / "cli-data").known_hosts_path == (
        tmp_path / "cli-data" / "known_hosts"
    )


# -- values -----------------------------------------------------------------


def test_full_config_is_read_into_typed_settings(tmp_path: Path) -> None:
    config = write(tmp_path / "itop.yaml", """\
data_dir: /srv/itop
ssh:
  host_key_policy: accept-new
  connect_timeout: 2.5
  keepalive_interval: 0
  keepalive_count_max: 5
  max_concurrent_handshakes: 20
  connect_retries: 0
  config_files: [ssh/config, /etc/ssh/ssh_config]
  known_hosts_files: ["~/kh"]
  identity_files: [keys/id]
  use_agent: false
run:
  forks: 7
  timeout: 12
  output_limit: 2048
roles:
  alice: admin
  bob: trainee
default_role: viewer
ui:
  theme: nord
inventory:
  sources: [inv.ini]
""")
    s = load_settings(config)
    assert s.data_dir == Path("/srv/itop")
    assert s.config_path == config
    assert s.ssh == SSHSettings(
        host_key_policy="accept-new",
        connect_timeout=2.5,
        keepalive_interval=0.0,
        keepalive_count_max=5,
        max_concurrent_handshakes=20,
        connect_retries=0,
        config_files=[tmp_path / "ssh" / "config", Path("/etc/ssh/ssh_config")],
        known_hosts_files=[Path.home() / "kh"],
        identity_files=[tmp_path / "keys" / "id"],
        use_agent=False,
    )
    assert (s.forks, s.command_timeout, s.output_limit) == (7, 12.0, 2048)
    assert isinstance(s.command_timeout, float)
    assert s.roles == {"alice": "admin", "bob": "trainee"}
    assert s.role_for("alice") == "admin"
    assert s.role_for("carol") == "viewer"
    assert s.theme == "nord"
    assert s.inventory_sources == [tmp_path / "inv.ini"]


def test_empty_file_and_empty_sections_mean_defaults(tmp_path: Path) -> None:
    defaults = Settings(data_dir=Path("x"))
    for text in ("", "# only a comment\n", "ssh:\nrun: {}\n"):
        s = load_settings(write(tmp_path / "itop.yaml", text))
        assert s.ssh == defaults.ssh
        assert s.forks == defaults.forks


def test_example_config_loads_and_documents_the_defaults() -> None:
    s = load_settings(EXAMPLE)
    defaults = Settings(data_dir=s.data_dir, config_path=s.config_path)
    assert s == defaults


def test_example_config_mentions_every_key() -> None:
    text = EXAMPLE.read_text()
    tree = yaml.safe_load(text)
    assert set(tree["ssh"]) == {f.name for f in dataclasses.fields(SSHSettings)}
    assert set(tree["run"]) == {"forks", "timeout", "output_limit"}
    assert {"roles", "default_role", "ui", "inventory"} <= set(tree)
    # data_dir is documented commented out (its default is platform dependent).
    assert "# data_dir:" in text


# -- errors name file, line and field ---------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("ssh:\n  connect_timeout: 3\n  host_key_policy: lax\n", 3, "ssh.host_key_policy",
         ["strict, accept-new", "'lax'"]),
        ("run:\n  forkz: 3\n", 2, "run.forkz", ["unknown key", "did you mean 'forks'"]),
        ("colour: red\n", 1, "colour", ["unknown key", "known keys: data_dir"]),
        ("run:\n  forks: \"3\"\n", 2, "run.forks", ["expected an integer", "a string"]),
        ("run:\n  forks: 0\n", 2, "run.forks", ["between 1 and 1000", "got 0"]),
        ("run:\n  forks: 1001\n", 2, "run.forks", ["between 1 and 1000"]),
        ("run:\n  forks: true\n", 2, "run.forks", ["expected an integer", "a boolean"]),
        ("run:\n  timeout: fast\n", 2, "run.timeout", ["expected a number"]),
        ("ssh:\n  use_agent: yes please\n", 2, "ssh.use_agent", ["true or false"]),
        ("ssh: [1, 2]\n", 1, "ssh", ["expected a mapping", "a list"]),
        ("ssh:\n  config_files: ~/.ssh/config\n", 2, "ssh.config_files", ["list of paths"]),
        ("ssh:\n  config_files:\n    - a\n    - [b]\n", 4, "ssh.config_files[1]", ["expected a path"]),
        ("roles:\n  alice: boss\n", 2, "roles.alice", ["viewer, trainee, operator"]),
        ("default_role: oprator\n", 1, "default_role", ["did you mean 'operator'"]),
        ("run:\n  forks:\n", 2, "run.forks", ["has no value"]),
        ("run:\n  forks: 2\n  forks: 3\n", 3, "run.forks", ["duplicate key"]),
        ("- a\n- b\n", 1, "(top level)", ["expected a mapping of settings"]),
        ("ui:\n  theme: ''\n", 2, "ui.theme", ["non-empty string"]),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: list[str]
) -> None:
    path = write(tmp_path / "itop.yaml", text)
    error = error_of(path)
    assert (error.path, error.line, error.field) == (path, line, field)
    message = str(error)
    assert message.startswith(f"{path}:{line}: {field}: ")
    for word in words:
        assert word in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "itop.yaml", "ssh:\n  connect_timeout: 3\n  bad: [unclosed\nrun: {}\n")
    error = error_of(path)
    assert error.field == "(yaml)"
    assert error.line is not None and error.line >= 3
    assert str(error).startswith(f"{path}:{error.line}: (yaml): invalid YAML")


def test_tab_indentation_is_a_syntax_error_with_line(tmp_path: Path) -> None:
    path = write(tmp_path / "itop.yaml", "run:\n\tforks: 3\n")
    error = error_of(path)
    assert (error.line, error.field) == (2, "(yaml)")


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    assert "is a directory" in str(error_of(tmp_path))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in str(error_of(binary))
