"""Variables in procedure commands: finding, validating, rendering, redacting.

A command template names variables as ``{{ name }}``. Rendering replaces
each with ``shlex.quote(value)``, so whatever a value holds (``; rm -rf /``,
``$(id)``, quotes, newlines) reaches the host's shell as one literal word.
Because the placeholder is quoted already, it must stand outside any shell
quotes in the template (``x={{ path }}``, then ``"$x"``); the loader refuses
a placeholder inside quotes, where the added quotes would become literal.

Secret values never enter the command text, which ends up in process
listings on the host, the audit log and the run record. A command that uses
a secret starts by reading it from standard input into a shell variable
(``IFS= read -r ITOP_SECRET_name``) and uses ``"$ITOP_SECRET_name"`` where
the placeholder was; the runner passes :attr:`RenderedCommand.stdin` to the
transport. :meth:`RenderedCommand.redacted` is the readable form for display,
with ``***`` for each secret.

Two variables are built in and set per host by the runner: ``host`` (the
inventory name) and ``address`` (what the transport connects to).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from itop_tui.domain.procedure import Variable

BUILTIN_VARIABLES = ("host", "address")
REDACTED = "***"
MAX_VALUE_LENGTH = 16 * 1024

_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_OPEN = "{{"


class TemplateError(ValueError):
    """A template holds a ``{{`` that is not a well-formed placeholder.

    ``offset`` is the character position of the problem in the template.
    """

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


class VariableError(ValueError):
    """Variable values are missing or invalid.

    ``problems`` holds ``(variable name, message)`` pairs, one per problem;
    messages never contain the value of a secret variable.
    """

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.problems))


@dataclass(frozen=True)
class Placeholder:
    """One ``{{ name }}`` in a template, at ``template[start:end]``."""

    name: str
    start: int
    end: int


def placeholders(template: str) -> list[Placeholder]:
    """Every placeholder in ``template``, in order.

    Raises :class:`TemplateError` for a ``{{`` that does not open a
    placeholder of the form ``{{ name }}`` (a literal ``{{`` cannot appear in
    a template; write ``{ {``).
    """
    found: list[Placeholder] = []
    position = 0
    while True:
        start = template.find(_OPEN, position)
        if start < 0:
            return found
        match = _PLACEHOLDER_RE.match(template, start)
        if match is None:
            close = template.find("}}", start)
            end = close + 2 if 0 <= close < start + 60 else start + 24
            snippet = template[start:end].split("\n", 1)[0]
            raise TemplateError(
                start,
                f"malformed placeholder {snippet!r}: write {{{{ name }}}} with a variable name",
            )
        found.append(Placeholder(match.group(1), start, match.end()))
        position = match.end()


def referenced_names(template: str) -> list[str]:
    """The distinct variable names a template uses, in order of first use."""
    names: list[str] = []
    for placeholder in placeholders(template):
        if placeholder.name not in names:
            names.append(placeholder.name)
    return names


def quoted_placeholders(template: str) -> list[Placeholder]:
    """Placeholders that stand inside single or double shell quotes.

    Rendering adds its own quotes, which would become literal characters
    there. The scan follows POSIX quoting, backslash escapes and ``#``
    comments; it does not parse here-documents, and it also reports a
    placeholder inside ``"$(...)"`` (write ``x={{ name }}`` first instead).
    """
    spots = {p.start: p for p in placeholders(template)}
    inside: list[Placeholder] = []
    state = "plain"
    index = 0
    length = len(template)
    while index < length:
        char = template[index]
        if index in spots and state != "comment":
            if state in ("single", "double"):
                inside.append(spots[index])
            index = spots[index].end
            continue
        if state == "plain":
            if char == "\\":
                index += 2
                continue
            if char == "'":
                state = "single"
            elif char == '"':
                state = "double"
            elif char == "#" and (index == 0 or template[index - 1] in " \t\n;&|()"):
                state = "comment"
        elif state == "single":
            if char == "'":
                state = "plain"
        elif state == "double":
            if char == "\\":
                index += 2
                continue
            if char == '"':
                state = "plain"
        elif state == "comment" and char == "\n":
            state = "plain"
        index += 1
    return inside


def value_problem(variable: Variable, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``variable``, or None when it is.

    The message never quotes the value of a secret variable.
    """
    shown = "" if variable.secret else f" (got {value!r})"
    if "\x00" in value:
        return "must not contain a NUL character"
    if variable.secret and ("\n" in value or "\r" in value):
        return "a secret value cannot contain a newline"
    if len(value) > MAX_VALUE_LENGTH:
        return f"is longer than {MAX_VALUE_LENGTH} characters"
    if value == "" and variable.required:
        return "is required"
    if variable.choices and value not in variable.choices:
        return f"must be one of {', '.join(variable.choices)}{shown}"
    if variable.regex is not None and value != "" and not re.fullmatch(variable.regex, value):
        return f"must match the regex `{variable.regex}`{shown}"
    return None


def resolve_values(
    variables: Iterable[Variable],
    supplied: Mapping[str, str],
    *,
    deferred: Collection[str] = (),
) -> dict[str, str]:
    """The value of every declared variable, from ``supplied`` or defaults.

    A variable without a supplied value takes its default; an optional one
    without default is the empty string; a required one is a problem unless
    it is in ``deferred`` (asked later by an ``input`` step; left out of the
    result). Unknown names in ``supplied`` are problems too. Raises
    :class:`VariableError` listing every problem.
    """
    declared = {variable.name: variable for variable in variables}
    problems: list[tuple[str, str]] = []
    for name in supplied:
        if name in BUILTIN_VARIABLES:
            problems.append((name, "is set by itop for each host and cannot be given"))
        elif name not in declared:
            known = ", ".join(declared) or "none"
            problems.append((name, f"is not a variable of this procedure (variables: {known})"))
    values: dict[str, str] = {}
    for name, variable in declared.items():
        if name in supplied:
            value = supplied[name]
        elif variable.default is not None:
            value = variable.default
        elif name in deferred:
            continue
        elif variable.required:
            problems.append((name, "is required"))
            continue
        else:
            value = ""
        problem = value_problem(variable, value)
        if problem is not None:
            problems.append((name, problem))
        else:
            values[name] = value
    if problems:
        raise VariableError(problems)
    return values


def builtin_values(host_name: str, address: str) -> dict[str, str]:
    """The built-in variables for one target host."""
    return {"host": host_name, "address": address}


@dataclass(frozen=True)
class RenderedCommand:
    """A command with its variables substituted.

    ``text`` is what runs on the host; it holds no secret value, so it may be
    stored and audited. ``stdin`` carries the secret values (one per line, in
    the order the command reads them) and must be handed to the transport
    as the command's standard input, never stored; it is None when the
    command uses no secret. ``str()`` gives the redacted form.
    """

    text: str
    redacted_text: str
    stdin: bytes | None = field(default=None, repr=False)

    def redacted(self) -> str:
        """The command as written, values quoted and each secret shown as ``***``."""
        return self.redacted_text

    def __str__(self) -> str:
        return self.redacted_text


def secret_shell_variable(name: str) -> str:
    """The shell variable a rendered command keeps secret ``name`` in."""
    return f"ITOP_SECRET_{name}"


def render_command(
    template: str, values: Mapping[str, str], *, secret_names: Collection[str] = ()
) -> RenderedCommand:
    """Substitute ``values`` into a command template, each value shell-quoted.

    ``values`` must hold every name the template uses (declared variables and
    the built-ins); a missing one raises :class:`VariableError`, as does a
    secret value holding a newline (it could not be read back as one line).
    Secrets go to :attr:`RenderedCommand.stdin`, not into the text.
    """
    names = referenced_names(template)
    problems = [(name, "has no value") for name in names if name not in values]
    secrets = [name for name in names if name in secret_names and name in values]
    problems += [
        (name, "a secret value cannot contain a newline")
        for name in secrets
        if "\n" in values[name] or "\r" in values[name]
    ]
    if problems:
        raise VariableError(problems)

    def substituted(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in secret_names:
            return f'"${secret_shell_variable(name)}"'
        return shlex.quote(values[name])

    def shown(match: re.Match[str]) -> str:
        name = match.group(1)
        return REDACTED if name in secret_names else shlex.quote(values[name])

    body = _PLACEHOLDER_RE.sub(substituted, template)
    if not secrets:
        return RenderedCommand(text=body, redacted_text=_PLACEHOLDER_RE.sub(shown, template))
    prelude = "".join(
        f"IFS= read -r {secret_shell_variable(name)} || "
        "{ echo 'itop: secret values expected on standard input' >&2; exit 2; }\n"
        for name in secrets
    )
    stdin = "".join(values[name] + "\n" for name in secrets).encode("utf-8")
    return RenderedCommand(
        text=prelude + body,
        redacted_text=_PLACEHOLDER_RE.sub(shown, template),
        stdin=stdin,
    )


def render_text(
    template: str, values: Mapping[str, str], *, secret_names: Collection[str] = ()
) -> str:
    """Substitute values into display text (instructions, descriptions), unquoted.

    Secret variables read ``***``; names without a value are left as written.
    """

    def shown(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in secret_names:
            return REDACTED
        return values.get(name, match.group(0))

    return _PLACEHOLDER_RE.sub(shown, template)


def redact_output(text: str, secret_values: Iterable[str]) -> str:
    """Replace every occurrence of each non-empty secret value in ``text`` by ``***``.

    For host output, which may echo a secret, before it is stored or shown.
    Longer values go first so one secret containing another is hidden whole.
    """
    for secret in sorted({s for s in secret_values if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def in_posix_sh(command: str) -> str:
    """Wrap a rendered command so it runs under ``sh`` whatever the login shell is.

    Library commands are POSIX sh; a user whose login shell is fish or csh
    would otherwise run them in the wrong language.
    """
    return "sh -c " + shlex.quote(command)
