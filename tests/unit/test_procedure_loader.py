"""The procedure loader: valid files become Procedures, every error names file, line and field."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from itop_tui.domain.procedure import DEFAULT_STEP_TIMEOUT, Expect, Procedure, Until
from itop_tui.domain.procedure_loader import (
    EXPECT_KEYS,
    PROCEDURE_KEYS,
    STEP_KEYS,
    UNTIL_KEYS,
    VARIABLE_KEYS,
    ProcedureFormatError,
    dump_procedure,
    load_procedure,
    procedure_from_dict,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "procedures.md"

VALID = textwrap.dedent(
    """\
    id: demo
    title: Demo procedure
    version: "1.0"
    description: Works on {{ service }}.
    targets: web
    serial: [1, "50%"]
    max_fail_percentage: 25
    variables:
          - name: service
            required: true
            regex: '[a-z]+'
          - name: mode
            default: fast
            choices: [fast, slow]
          - name: token
            secret: true
    steps:
          - id: look
            title: Look at {{ service }}
            kind: command
            mutates: false
            command: |
              s={{ service }}
              echo "$s"
          - id: change
            title: Change it
            kind: command
            retries: 2
            delay: 1.5
            expect:
              exit: [0, 3]
              regex: '^ok'
            command: echo ok {{ mode }} {{ token }}
          - id: wait
            title: Wait until up
            kind: check
            until:
              timeout: 30
              interval: 3
            command: test -e /
          - id: ask
            title: Ask the mode
            kind: input
            variable: mode
          - id: tell
            title: Tell people
            kind: manual
            instructions: Tell the team about {{ host }}.
          - id: ok
            title: Approve
            kind: approval
    """
)


def load(text: str, file: str = "demo.yaml") -> Procedure:
    return load_procedure(text, file)


def error_of(text: str, file: str = "bad.yaml") -> ProcedureFormatError:
    with pytest.raises(ProcedureFormatError) as caught:
        load_procedure(text, file)
    error = caught.value
    # Every line has the documented FILE:LINE: field.path: message shape, one per error.
    assert str(error).splitlines() == [
        f"{e.file}:{e.line}: {e.field_path}: {e.message}" if e.field_path
        else f"{e.file}:{e.line}: {e.message}"
        for e in error.errors
    ]
    assert error.errors[0] is error
    return error


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line containing ``fragment``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return hits[occurrence - 1]


def replace(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_valid_procedure_loads_with_defaults() -> None:
    procedure = load(VALID)
    assert procedure.id == "demo"
    assert procedure.version == "1.0"
    assert procedure.targets == "web"
    assert procedure.serial == (1, "50%")
    assert procedure.max_fail_percentage == 25.0
    assert procedure.strategy == "step-first"
    assert [v.name for v in procedure.variables] == ["service", "mode", "token"]
    assert procedure.secret_names() == {"token"}
    assert procedure.input_variable_names() == {"mode"}
    look, change, wait, ask, tell, ok = procedure.steps
    assert (look.mutates, look.timeout, look.expect) == (False, DEFAULT_STEP_TIMEOUT, Expect())
    assert look.command == 's={{ service }}\necho "$s"\n'
    assert (change.mutates, change.retries, change.delay) == (True, 2, 1.5)
    assert change.expect == Expect(exit=(0, 3), regex="^ok")
    assert (wait.mutates, wait.until) == (False, Until(timeout=30.0, interval=3.0))
    assert (ask.variable, ask.mutates, ask.timeout) == ("mode", False, None)
    assert (tell.mutates, tell.instructions) == (False, "Tell the team about {{ host }}.")
    assert (ok.kind, ok.mutates) == ("approval", False)
    assert procedure.step("wait") is wait
    assert procedure.step_index("ask") == 3
    assert procedure.mutates


def test_expect_decides_pass_or_fail() -> None:
    change = load(VALID).step("change")
    assert change.expect.passes(3, "ok\n")
    assert change.expect.failure(1, "ok") == "exit status 1, expected 0 or 3"
    assert change.expect.failure(0, "nope\nstill nope") == "output does not match /^ok/"
    assert change.expect.passes(0, "first\nok second")  # multiline
    assert change.expect.failure(None, "ok") == "the command did not finish"
    assert Until(timeout=30, interval=3).max_attempts() == 11


def test_until_interval_defaults_to_five_seconds_or_the_timeout() -> None:
    text = replace("          timeout: 30\n          interval: 3\n", "          timeout: 2\n")
    assert load(text).step("wait").until == Until(timeout=2.0, interval=2.0)
    text = replace("          timeout: 30\n          interval: 3\n", "          timeout: 30\n")
    assert load(text).step("wait").until == Until(timeout=30.0, interval=5.0)


# -- errors: each names file, line and field ----------------------------------

def test_wrong_type() -> None:
    text = replace("retries: 2", "retries: two")
    error = error_of(text, "site/demo.yaml")
    assert (error.file, error.line, error.field_path) == ("site/demo.yaml", line_of(text, "retries: two"), "steps[1].retries")
    assert str(error) == (
        f"site/demo.yaml:{error.line}: steps[1].retries: expected an integer, got a string ('two')"
    )


def test_unknown_top_level_key() -> None:
    text = replace("targets: web", "target: web")
    error = error_of(text)
    assert (error.line, error.field_path) == (5, "target")
    assert "unknown key (did you mean 'targets'?)" in error.message
    assert "known keys: id, title, version" in error.message


def test_unknown_key_in_step_and_in_expect() -> None:
    text = replace("retries: 2", "retrys: 2")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "retrys"), "steps[1].retrys")
    assert "did you mean 'retries'" in error.message
    text = replace("regex: '^ok'", "pattern: '^ok'")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "pattern:"), "steps[1].expect.pattern")


def test_key_of_another_kind_is_refused() -> None:
    text = replace("        retries: 2\n        delay: 1.5\n", "        until: {timeout: 5}\n")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "until: {timeout: 5}"), "steps[1].until")
    assert error.message == "not allowed in a command step (only in: check steps)"


def test_every_error_of_a_file_is_reported_in_one_pass() -> None:
    text = replace("        retries: 2\n        delay: 1.5\n", "        mutate: false\n        until: {timeout: 5}\n")
    text = replace("        command: test -e /", "        command: test -e /\n        retries: many", text)
    text = replace("id: demo", "id: Demo", text)
    error = error_of(text, "site/demo.yaml")
    found = [(e.line, e.field_path) for e in error.errors]
    assert found == [
        (line_of(text, "id: Demo"), "id"),
        (line_of(text, "mutate: false"), "steps[1].mutate"),
        (line_of(text, "until: {timeout: 5}"), "steps[1].until"),
        (line_of(text, "retries: many"), "steps[2].retries"),
    ]
    assert all(e.file == "site/demo.yaml" for e in error.errors)
    mutate, until = error.errors[1], error.errors[2]
    assert mutate.message.startswith("unknown key (did you mean 'mutates'?); known keys of a command step: ")
    known = mutate.message.split(": ", 1)[1].split(", ")
    assert "until" not in known and "variable" not in known
    assert {"command", "expect", "retries", "mutates", "skip_in_check_mode"} <= set(known)
    assert until.message == "not allowed in a command step (only in: check steps)"
    assert len(str(error).splitlines()) == 4


def test_errors_in_variables_do_not_cascade_into_their_uses() -> None:
    # The variable is still declared, so {{ service }} in the steps is not reported.
    text = replace("        required: true\n        regex", "        required: maybe\n        regex")
    error = error_of(text)
    assert [(e.field_path, e.message) for e in error.errors] == [
        ("variables[0].required", "expected true or false, got a string ('maybe')")]
    # A step of an unknown kind reports its kind; its other keys are not judged by a guess.
    text = replace("kind: manual", "kind: manul")
    error = error_of(text)
    assert [e.field_path for e in error.errors] == ["steps[4].kind"]


def test_missing_title() -> None:
    text = VALID.replace("title: Demo procedure\n", "")
    error = error_of(text)
    assert (error.line, error.field_path, error.message) == (1, "title", "is required")


def test_missing_step_title_points_at_the_step() -> None:
    text = replace("        title: Tell people\n", "")
    error = error_of(text)
    assert (error.line, error.field_path, error.message) == (
        line_of(text, "- id: tell"), "steps[4].title", "is required"
    )


def test_bad_kind() -> None:
    text = replace("kind: input", "kind: prompt")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "kind: prompt"), "steps[3].kind")
    assert error.message == "must be one of manual, command, check, input, approval, got 'prompt'"
    error = error_of(replace("kind: input", "kind: inptu"))
    assert "(did you mean 'input'?)" in error.message


def test_undeclared_variable_in_a_block_command_names_its_exact_line() -> None:
    text = replace('          echo "$s"\n', '          echo "$s"\n          x={{ servce }}\n')
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "{{ servce }}"), "steps[0].command")
    assert "{{ servce }} names no declared variable (did you mean 'service'?)" in error.message
    assert "known: service, mode, token, host, address" in error.message


def test_undeclared_variable_in_title_instructions_and_description() -> None:
    error = error_of(replace("Look at {{ service }}", "Look at {{ svc }}"))
    assert error.field_path == "steps[0].title"
    error = error_of(replace("about {{ host }}", "about {{ hostname }}"))
    assert error.field_path == "steps[4].instructions"
    error = error_of(replace("Works on {{ service }}", "Works on {{ thing }}"))
    assert (error.line, error.field_path) == (4, "description")


def test_placeholder_inside_quotes_is_refused() -> None:
    text = replace("          s={{ service }}\n", "          s=\"{{ service }}\"\n")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, 's="{{ service }}"'), "steps[0].command")
    assert "stands inside shell quotes" in error.message


def test_malformed_placeholder() -> None:
    text = replace("echo ok {{ mode }}", "echo ok {{ mode | upper }}")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "upper"), "steps[1].command")
    assert error.message.startswith("malformed placeholder '{{ mode | upper }}'")


def test_duplicate_step_id() -> None:
    text = replace("- id: wait", "- id: look")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "- id: look", 2), "steps[2].id")
    assert error.message == f"duplicate step id 'look' (first at line {line_of(text, '- id: look')})"


def test_duplicate_variable_and_duplicate_key() -> None:
    text = replace("- name: mode", "- name: service")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "- name: service", 2), "variables[1].name")
    text = replace("version: \"1.0\"\n", "version: \"1.0\"\nversion: \"2\"\n")
    error = error_of(text)
    assert (error.line, error.field_path, error.message) == (4, "version", "duplicate key (first at line 3)")


def test_bad_regex() -> None:
    text = replace("regex: '[a-z]+'", "regex: '[a-z+'")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "'[a-z+'"), "variables[0].regex")
    assert error.message.startswith("invalid regular expression: unterminated character set")
    text = replace("regex: '^ok'", "regex: '(ok'")
    error = error_of(text)
    assert (error.line, error.field_path) == (line_of(text, "'(ok'"), "steps[1].expect.regex")


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("id: demo", "id: Demo Proc", "id", "is not valid"),
        ('version: "1.0"', "version: 1.10", "version", "quote it: '1.1'"),
        ("max_fail_percentage: 25", "max_fail_percentage: 101", "max_fail_percentage", "at most 100"),
        ('serial: [1, "50%"]', "serial: 0", "serial", "must be at least 1"),
        ('serial: [1, "50%"]', 'serial: [1, "150%"]', "serial[1]", "percentage from '1%' to '100%'"),
        ('serial: [1, "50%"]', "serial: []", "serial", "an empty list"),
        ("max_fail_percentage: 25", "strategy: free", "strategy", "must be one of step-first, host-first"),
        ("        variable: mode", "        variable: speed", "steps[3].variable", "'speed' is not declared"),
        ("        secret: true", "        secret: true\n        default: x", "variables[2].default", "cannot have a default"),
        ("        default: fast", "        default: medium", "variables[1].default", "the default must be one of fast, slow"),
        ("        required: true\n        regex", "        required: true\n        default: x\n        regex", "variables[0].default", "a required variable has no default"),
        ("      - name: mode", "      - name: host", "variables[1].name", "built in"),
        ("        until:", "        mutates: true\n        until:", "steps[2].mutates", "read-only by definition"),
        ("        retries: 2\n", "", "steps[1].delay", "only means something with retries"),
        ("          exit: [0, 3]", "          exit: [0, 300]", "steps[1].expect.exit[1]", "between 0 and 255"),
        ("          exit: [0, 3]", "          exit: []", "steps[1].expect.exit", "at least one exit status"),
        ("          interval: 3", "          interval: 60", "steps[2].until.interval", "longer than the timeout"),
        ("        command: test -e /", "        command: test -e /\n        retries: 1", "steps[2].retries", "either until"),
        ("        instructions: Tell the team about {{ host }}.\n", "", "steps[4].instructions", "is required"),
        ("        command: test -e /\n", "", "steps[2].command", "is required"),
        ("        choices: [fast, slow]", "        choices: [fast, fast]", "variables[1].choices[1]", "duplicate choice"),
        ("        choices: [fast, slow]", "        choices: [fast, slow]\n        regex: x", "variables[1].regex", "either choices or regex"),
        ("kind: manual", "kind: manual\n        timeout: 5", "steps[4].timeout", "only in: command, check steps"),
        ("targets: web", "targets: [web]", "targets", "expected a string, got a list"),
        ("title: Demo procedure", "title: Demo procedure\ntitle2: x", "title2", "unknown key"),
    ],
)
def test_field_errors(old: str, new: str, field: str, message: str) -> None:
    text = replace(old, new)
    error = error_of(text)
    assert error.field_path == field
    assert message in error.message
    assert error.line is not None and 1 <= error.line <= len(text.splitlines())


def test_whole_file_errors() -> None:
    error = error_of("", "empty.yaml")
    assert str(error) == "empty.yaml:1: the file is empty; expected a procedure"
    error = error_of("- a\n- b\n", "list.yaml")
    assert str(error) == "list.yaml:1: (top level): expected a procedure (a mapping), got a list"
    error = error_of("id: x\ntitle: [unclosed\n", "broken.yaml")
    assert error.file == "broken.yaml" and error.line is not None and error.line >= 2
    assert error.message.startswith("invalid YAML")
    error = error_of("id: x\n1: y\n")
    assert (error.line, error.message) == (2, "keys must be plain names")
    error = error_of(VALID.replace("steps:\n", "steps: []\nsteps_old:\n"))
    assert error.field_path in ("steps", "steps_old")


def test_alias_expansion_is_bounded() -> None:
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 7):
        previous = chr(ord("a") + level - 1)
        bomb.append(f"{chr(ord('a') + level)}: &{chr(ord('a') + level)} [{', '.join([f'*{previous}'] * 10)}]")
    error = error_of("\n".join(bomb) + "\n")
    assert error.message.startswith("too large")


def test_errors_without_lines_for_plain_data() -> None:
    data = load(VALID).to_dict()
    data["steps"][0]["kind"] = "nope"
    with pytest.raises(ProcedureFormatError) as caught:
        procedure_from_dict(data, "store:demo")
    assert caught.value.line is None
    assert str(caught.value).startswith("store:demo: steps[0].kind: must be one of")


# -- round trips and hashing ---------------------------------------------------

def test_to_dict_round_trips_through_procedure_from_dict() -> None:
    procedure = load(VALID)
    assert procedure_from_dict(procedure.to_dict()) == procedure


def test_dump_round_trips_and_keeps_commands_readable() -> None:
    procedure = load(VALID)
    dumped = dump_procedure(procedure)
    assert load(dumped, "dumped.yaml") == procedure
    assert "command: |" in dumped
    assert "mutates: false" in dumped  # a read-only command says so
    assert "timeout:" not in dumped.split("until:")[0].split("- id: look")[1]  # defaults left out


def test_content_hash_ignores_formatting_and_changes_with_content() -> None:
    procedure = load(VALID)
    assert len(procedure.content_hash()) == 64
    reformatted = "# a comment\n" + VALID.replace("version: \"1.0\"", "version: '1.0'   # quoted")
    reformatted = reformatted.replace("        mutates: false\n", "        mutates: no\n")
    assert load(reformatted).content_hash() == procedure.content_hash()
    assert load(dump_procedure(procedure)).content_hash() == procedure.content_hash()
    changed = VALID.replace("command: test -e /", "command: test -e /tmp")
    assert load(changed).content_hash() != procedure.content_hash()
    assert load(VALID.replace("retries: 2", "retries: 3")).content_hash() != procedure.content_hash()


def test_content_hash_is_stable_across_processes() -> None:
    code = (
        "import sys; from itop_tui.domain.procedure_loader import load_procedure;"
        "print(load_procedure(sys.stdin.read(), 'x').content_hash())"
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", code], input=VALID, capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}, cwd=ROOT,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert hashes == {load(VALID).content_hash()}


# -- the documentation agrees with the loader ----------------------------------

def test_docs_example_loads() -> None:
    text = DOCS.read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert example is not None
    procedure = load(example.group(1), "docs/procedures.md")
    assert {step.kind for step in procedure.steps} == {"manual", "command", "check", "input", "approval"}
    assert procedure.secret_names()


def test_docs_describe_every_key() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for key in (*PROCEDURE_KEYS, *VARIABLE_KEYS, *STEP_KEYS):
        assert f"| `{key}` |" in text or f"| `{key}." in text, key
    for key in EXPECT_KEYS:
        assert f"`expect.{key}`" in text, key
    for key in UNTIL_KEYS:
        assert f"`until.{key}`" in text, key
