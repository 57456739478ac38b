"""Substitution: values reach the shell as literals; secrets never reach the command text."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from itop_tui.domain.procedure import Variable
from itop_tui.domain.substitution import (
    REDACTED,
    TemplateError,
    VariableError,
    builtin_values,
    in_posix_sh,
    placeholders,
    quoted_placeholders,
    redact_output,
    referenced_names,
    render_command,
    render_text,
    resolve_values,
    value_problem,
)

INJECTIONS = [
    "; rm -rf /",
    "$(id)",
    "`id`",
    "it's",
    'say "hi"',
    "line one\nline two",
    "$HOME ${PATH} $1 $$",
    "*",
    "-n",
    "a\\b\\\\c",
    "' ; echo pwned ; '",
    '" ; echo pwned ; "',
    "&& echo pwned || echo pwned | cat > /tmp/x",
    "",
    "  spaces  around  ",
    "tab\there",
    "ünïcødé ✓",
    "{{ other }}",
]


def sh(command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, timeout=10)


@pytest.mark.parametrize("value", INJECTIONS)
def test_values_stay_literal_when_the_shell_runs_them(value: str) -> None:
    rendered = render_command("printf '%s' {{ v }}", {"v": value})
    result = sh(rendered.text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == value
    assert rendered.stdin is None


@pytest.mark.parametrize("value", INJECTIONS)
def test_values_stay_literal_through_a_shell_variable_and_posix_sh_wrapper(value: str) -> None:
    template = 'x={{ v }}; y={{ w }}\nprintf "%s|%s" "$x" "$y"'
    rendered = render_command(template, {"v": value, "w": "second"})
    result = sh(in_posix_sh(rendered.text))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{value}|second"


def test_rendering_quotes_with_shlex() -> None:
    rendered = render_command("ls -- {{ path }} {{path}}", {"path": "/tmp/a b"})
    assert rendered.text == "ls -- '/tmp/a b' '/tmp/a b'"
    assert rendered.redacted() == rendered.text
    assert str(rendered) == rendered.text


def test_missing_value_is_an_error() -> None:
    with pytest.raises(VariableError) as caught:
        render_command("echo {{ a }} {{ b }}", {"a": "1"})
    assert caught.value.problems == (("b", "has no value"),)


@pytest.mark.parametrize("secret", ["hunter2", "$(id)", "`id`; rm -rf /", "it's \"quoted\"", "CANARY-5f1e"])
def test_secrets_never_enter_the_command_text_or_its_redacted_form(secret: str) -> None:
    rendered = render_command(
        "user={{ user }}; pw={{ password }}\nprintf '%s:%s' \"$user\" \"$pw\"",
        {"user": "alice", "password": secret},
        secret_names={"password"},
    )
    assert secret not in rendered.text
    assert secret not in rendered.redacted()
    assert secret not in str(rendered)
    assert secret not in repr(rendered)
    assert REDACTED in rendered.redacted()
    assert rendered.redacted() == "user=alice; pw=***\nprintf '%s:%s' \"$user\" \"$pw\""
    # The real value travels on standard input and is used literally.
    assert rendered.stdin == (secret + "\n").encode()
    result = sh(in_posix_sh(rendered.text), rendered.stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"alice:{secret}"


def test_a_secret_command_without_its_stdin_stops_with_a_clear_message() -> None:
    rendered = render_command("echo {{ token }}", {"token": "t0ken"}, secret_names={"token"})
    result = sh(rendered.text, b"")
    assert result.returncode == 2
    assert b"secret values expected on standard input" in result.stderr
    assert b"t0ken" not in result.stdout


def test_several_secrets_are_read_in_order() -> None:
    rendered = render_command(
        "printf '%s,%s,%s' {{ b }} {{ a }} {{ b }}", {"a": "one", "b": "two"}, secret_names={"a", "b"}
    )
    assert rendered.stdin == b"two\none\n"
    assert sh(rendered.text, rendered.stdin).stdout == b"two,one,two"


def test_a_secret_with_a_newline_is_refused() -> None:
    with pytest.raises(VariableError, match="newline"):
        render_command("echo {{ s }}", {"s": "a\nb"}, secret_names={"s"})


def test_placeholders_are_found_and_malformed_ones_refused() -> None:
    found = placeholders("a {{ x }} b {{y}} c {{  z_1  }}")
    assert [p.name for p in found] == ["x", "y", "z_1"]
    assert found[0].start == 2
    assert referenced_names("{{ a }} {{ b }} {{ a }}") == ["a", "b"]
    for bad in ("echo {{ a b }}", "echo {{ }}", "echo {{ 1x }}", "echo {{ a", "echo {{ a }"):
        with pytest.raises(TemplateError) as caught:
            placeholders(bad)
        assert caught.value.offset == bad.index("{{")
    # A lone }} is ordinary text (awk uses it).
    assert placeholders("awk '{ if (x) { print } }}'") == []


@pytest.mark.parametrize(
    ("template", "inside"),
    [
        ("echo {{ a }}", []),
        ("echo '{{ a }}'", ["a"]),
        ('echo "{{ a }}"', ["a"]),
        ('echo "$(ls {{ a }})"', ["a"]),
        ("echo 'x' {{ a }} 'y'", []),
        ("echo \\' {{ a }}", []),
        ('echo "it\\"s" {{ a }}', []),
        ("# don't\necho {{ a }}", []),
        ("echo it#s '{{ a }}'", ["a"]),
        ("x={{ a }}; echo \"$x\" '{{ b }}' {{ c }}", ["b"]),
    ],
)
def test_placeholders_inside_quotes_are_detected(template: str, inside: list[str]) -> None:
    assert [p.name for p in quoted_placeholders(template)] == inside


def test_resolve_values_applies_defaults_and_rules() -> None:
    variables = [
        Variable("path", required=True, regex=r"/\S*"),
        Variable("mode", default="fast", choices=("fast", "slow")),
        Variable("note"),
        Variable("token", secret=True, required=True),
        Variable("later", required=True),
    ]
    values = resolve_values(variables, {"path": "/var/log", "token": "s3cret"}, deferred={"later"})
    assert values == {"path": "/var/log", "mode": "fast", "note": "", "token": "s3cret"}


def test_resolve_values_lists_every_problem_without_secret_values() -> None:
    variables = [
        Variable("path", required=True, regex=r"/\S*"),
        Variable("mode", choices=("fast", "slow"), default="fast"),
        Variable("count", regex="[0-9]+", default="1"),
        Variable("token", secret=True, regex="[a-z]+"),
        Variable("must", required=True),
    ]
    with pytest.raises(VariableError) as caught:
        resolve_values(
            variables,
            {"path": "relative", "mode": "medium", "count": "12abc", "token": "TOPSECRET",
             "host": "x", "typo": "1"},
        )
    problems = dict(caught.value.problems)
    assert problems["path"] == "must match the regex `/\\S*` (got 'relative')"
    assert problems["mode"] == "must be one of fast, slow (got 'medium')"
    assert "must match" in problems["count"]  # fullmatch: a matching prefix is not enough
    assert problems["token"] == "must match the regex `[a-z]+`"
    assert problems["must"] == "is required"
    assert "set by itop for each host" in problems["host"]
    assert "not a variable of this procedure" in problems["typo"]
    assert "TOPSECRET" not in str(caught.value)


def test_value_problems() -> None:
    assert value_problem(Variable("v"), "a\x00b") == "must not contain a NUL character"
    assert value_problem(Variable("v", secret=True), "a\nb") == "a secret value cannot contain a newline"
    assert value_problem(Variable("v"), "a\nb") is None
    assert value_problem(Variable("v", required=True), "") == "is required"
    assert value_problem(Variable("v", regex="[0-9]+"), "") is None  # optional and empty
    assert value_problem(Variable("v"), "x" * 20000) is not None


def test_render_text_for_display() -> None:
    text = render_text(
        "Restart {{ service }} on {{ host }} with {{ token }}; {{ unknown }} stays",
        {"service": "nginx", "host": "web1", "token": "s3cret"},
        secret_names={"token"},
    )
    assert text == "Restart nginx on web1 with ***; {{ unknown }} stays"


def test_redact_output_hides_every_secret_occurrence() -> None:
    output = "token=abc123 and again abc123; longer abc123456"
    assert redact_output(output, ["abc123", "abc123456", ""]) == "token=*** and again ***; longer ***"
    assert redact_output("nothing here", []) == "nothing here"


def test_builtin_values() -> None:
    values = builtin_values("web01", "10.0.0.5")
    rendered = render_command("ping -c1 {{ address }} # {{ host }}", values)
    assert rendered.text == "ping -c1 10.0.0.5 # web01"


def test_in_posix_sh_quotes_the_whole_command() -> None:
    command = "echo 'a b' \"$0\""
    wrapped = in_posix_sh(command)
    assert wrapped == "sh -c " + shlex.quote(command)
    assert sh(wrapped).stdout == b"a b sh\n"
