"""Procedure files: YAML text -> validated :class:`Procedure`, and back.

Pure: callers read the file and pass its text with a name for messages.
The text is parsed with :func:`yaml.compose` so every node keeps its line;
every problem raises :class:`ProcedureFormatError`, whose text is
``FILE:LINE: field.path: message``. Unknown keys, keys that do not belong to
a step's kind, duplicate keys and duplicate step ids are errors, and every
``{{ name }}`` in a command must name a declared or built-in variable and
stand outside shell quotes. The format is documented in docs/procedures.md;
``config/procedures/schema.json`` describes the same rules as JSON Schema.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from itop_tui.domain.procedure import (
    DEFAULT_EXPECTED_EXIT,
    DEFAULT_STEP_TIMEOUT,
    DEFAULT_STRATEGY,
    STEP_KINDS,
    STRATEGIES,
    Expect,
    Procedure,
    Step,
    Until,
    Variable,
    default_mutates,
)
from itop_tui.domain.substitution import (
    BUILTIN_VARIABLES,
    TemplateError,
    placeholders,
    quoted_placeholders,
    value_problem,
)

PROCEDURE_KEYS = (
    "id", "title", "version", "description", "targets", "variables", "steps",
    "serial", "max_fail_percentage", "strategy",
)
VARIABLE_KEYS = ("name", "description", "required", "default", "choices", "regex", "secret")
EXPECT_KEYS = ("exit", "regex")
UNTIL_KEYS = ("timeout", "interval")
_COMMON_STEP_KEYS = ("id", "title", "kind", "instructions")
STEP_KEYS_BY_KIND: dict[str, tuple[str, ...]] = {
    "manual": _COMMON_STEP_KEYS + ("mutates", "trainee_safe"),
    "command": _COMMON_STEP_KEYS + (
        "command", "expect", "retries", "delay", "timeout", "mutates", "trainee_safe",
        "skip_in_check_mode",
    ),
    "check": _COMMON_STEP_KEYS + (
        "command", "expect", "retries", "delay", "until", "timeout", "mutates",
        "skip_in_check_mode",
    ),
    "input": _COMMON_STEP_KEYS + ("variable",),
    "approval": _COMMON_STEP_KEYS,
}
STEP_KEYS = tuple(dict.fromkeys(key for keys in STEP_KEYS_BY_KIND.values() for key in keys))

ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
STEP_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VARIABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
PERCENT_RE = re.compile(r"([0-9]{1,3})%")
MAX_SECONDS = 7 * 24 * 3600.0
MAX_RETRIES = 100
MAX_NODES = 100_000


class ProcedureFormatError(ValueError):
    """A procedure file breaks the format. ``str()`` is ``FILE:LINE: field.path: message``.

    ``line`` is None when the procedure came from data without lines (the store).
    A file is checked whole, so one error may stand for several: ``errors``
    holds them all in line order (this one first), and ``str()`` then has
    one such line for each.
    """

    def __init__(
        self, file: str, line: int | None, field_path: str, message: str,
        more: tuple[ProcedureFormatError, ...] = (),
    ) -> None:
        self.file = file
        self.line = line
        self.field_path = field_path
        self.message = message
        self.errors: tuple[ProcedureFormatError, ...] = (self, *more)
        where = file if line is None else f"{file}:{line}"
        first = f"{where}: {field_path}: {message}" if field_path else f"{where}: {message}"
        super().__init__("\n".join([first, *(str(error) for error in more)]))

    @classmethod
    def of(cls, errors: list[ProcedureFormatError]) -> ProcedureFormatError:
        """One error standing for ``errors`` (at least one), sorted by line."""
        ordered = sorted(errors, key=lambda e: (e.line is None, e.line or 0))
        first = ordered[0]
        if len(ordered) == 1:
            return first
        return cls(first.file, first.line, first.field_path, first.message, tuple(ordered[1:]))


@dataclass
class _Node:
    """A parsed value with the line it came from (None for plain data).

    ``value`` is a scalar, a list of :class:`_Node`, or a dict of key to
    :class:`_Node`; ``key_lines`` holds the line of each mapping key.
    """

    value: Any
    line: int | None
    key_lines: dict[str, int | None] = field(default_factory=dict)
    block: bool = False

    def line_at(self, offset: int) -> int | None:
        """The line of character ``offset`` in a string value."""
        if self.line is None:
            return None
        if self.block:
            # A block scalar's text starts on the line after its indicator.
            return self.line + 1 + self.value[:offset].count("\n")
        return self.line


def load_procedure(text: str, file: str) -> Procedure:
    """Parse and validate a procedure file's text; ``file`` names it in errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProcedureFormatError(file, line, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ProcedureFormatError(file, None, "", f"invalid YAML: {exc}") from None
    if root is None:
        raise ProcedureFormatError(file, 1, "", "the file is empty; expected a procedure")
    budget = [MAX_NODES]
    return _Validator(file).procedure(_from_yaml(root, file, yaml.SafeLoader(""), budget))


def procedure_from_dict(data: Mapping[str, Any], source: str = "<data>") -> Procedure:
    """Validate plain data into a Procedure.

    Accepts the documented format as data and the full form of
    :meth:`Procedure.to_dict` (what the store keeps), whose null values and
    neutral values for keys a step's kind does not use are ignored.
    """
    return _Validator(source).procedure(_from_data(_without_neutral_values(data)))


_NEUTRAL_VALUES: tuple[Any, ...] = (None, False, 0, [], {"exit": [0], "regex": None})


def _without_neutral_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without null entries, and steps without unused neutral entries."""
    result: dict[str, Any] = {k: v for k, v in data.items() if v is not None and v != []}
    if isinstance(result.get("variables"), list):
        result["variables"] = [
            {k: v for k, v in item.items() if v is not None and v != []}
            if isinstance(item, Mapping) else item
            for item in result["variables"]
        ]
    if isinstance(result.get("steps"), list):
        steps = []
        for item in result["steps"]:
            if isinstance(item, Mapping):
                allowed = STEP_KEYS_BY_KIND.get(str(item.get("kind")), STEP_KEYS)
                item = {
                    k: v for k, v in item.items()
                    if v is not None
                    and not (k not in allowed and any(_same(v, n) for n in _NEUTRAL_VALUES))
                }
                if isinstance(item.get("expect"), Mapping):
                    item["expect"] = {k: v for k, v in item["expect"].items() if v is not None}
            steps.append(item)
        result["steps"] = steps
    return result


def _same(value: Any, neutral: Any) -> bool:
    """Equal and of the same type (so ``0 == False`` does not count)."""
    if isinstance(value, bool) != isinstance(neutral, bool):
        return False
    return bool(value == neutral)


def dump_procedure(procedure: Procedure) -> str:
    """The procedure as YAML in the documented format, defaults left out.

    ``load_procedure(dump_procedure(p), ...) == p`` for every valid procedure.
    """
    return yaml.dump(
        _minimal_dict(procedure), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True,
        width=100,
    )


# -- conversion to _Node ----------------------------------------------------


def _from_yaml(node: yaml.Node, file: str, constructor: yaml.SafeLoader, budget: list[int]) -> _Node:
    line = node.start_mark.line + 1
    # Aliases can make a small file expand enormously ("billion laughs").
    budget[0] -= 1
    if budget[0] < 0:
        raise ProcedureFormatError(file, line, "", f"too large: more than {MAX_NODES} values")
    if isinstance(node, yaml.MappingNode):
        values: dict[str, _Node] = {}
        key_lines: dict[str, int | None] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise ProcedureFormatError(file, key_line, "", "keys must be plain names")
            key = str(key_node.value)
            if key in values:
                raise ProcedureFormatError(
                    file, key_line, key, f"duplicate key (first at line {key_lines[key]})"
                )
            key_lines[key] = key_line
            values[key] = _from_yaml(value_node, file, constructor, budget)
        return _Node(values, line, key_lines)
    if isinstance(node, yaml.SequenceNode):
        return _Node([_from_yaml(item, file, constructor, budget) for item in node.value], line)
    try:
        value = constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise ProcedureFormatError(file, line, "", f"unreadable value: {exc}") from None
    return _Node(value, line, block=getattr(node, "style", None) in ("|", ">"))


def _from_data(data: Any) -> _Node:
    if isinstance(data, Mapping):
        return _Node(
            {str(k): _from_data(v) for k, v in data.items()}, None, {str(k): None for k in data}
        )
    if isinstance(data, list | tuple):
        return _Node([_from_data(item) for item in data], None)
    return _Node(data, None)


def _kind(value: Any) -> str:
    """A short phrase for what a value is, for 'expected X, got Y' messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    if isinstance(value, int):
        return f"an integer ({value!r})"
    if isinstance(value, float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    return f"a {type(value).__name__} ({value!r}; quote it to make it a string)"


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- validation --------------------------------------------------------------


Declared = Mapping[str, Variable | None]
"""The declared variable names; None for a variable whose other fields are wrong
(its name is still declared, so its uses are not reported again)."""


class _Validator:
    """Checks a :class:`_Node` tree field by field and builds the Procedure.

    It goes on after an error, field by field, and reports every error of
    the file together (``problems``); a field whose error would make the
    next ones meaningless (a step's kind) stops only that part.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ProcedureFormatError] = []

    def error(self, line: int | None, path: str, message: str) -> ProcedureFormatError:
        return ProcedureFormatError(self.file, line, path, message)

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Record an error raised inside the block and go on after it."""
        try:
            yield
        except ProcedureFormatError as exc:
            self.problems.extend(exc.errors)

    # structure

    def mapping(
        self, node: _Node, path: str, allowed: tuple[str, ...], what: str
    ) -> dict[str, _Node]:
        """The known fields of a mapping; each unknown key is recorded as an error."""
        if not isinstance(node.value, dict):
            raise self.error(node.line, path or "(top level)", f"expected {what}, got {_kind(node.value)}")
        for key in node.value:
            if key not in allowed:
                self.problems.append(self.error(
                    node.key_lines.get(key, node.line),
                    _join(path, key),
                    f"unknown key{_did_you_mean(key, allowed)}; known keys: {', '.join(allowed)}",
                ))
        return {key: value for key, value in node.value.items() if key in allowed}

    def required(self, fields: dict[str, _Node], key: str, node: _Node, path: str) -> _Node:
        if key not in fields:
            raise self.error(node.line, _join(path, key), "is required")
        return fields[key]

    # scalars

    def string(self, node: _Node, path: str, *, allow_empty: bool = False) -> str:
        if not isinstance(node.value, str):
            raise self.error(node.line, path, f"expected a string, got {_kind(node.value)}")
        if not allow_empty and not node.value.strip():
            raise self.error(node.line, path, "must not be empty")
        return node.value

    def line_text(self, node: _Node, path: str) -> str:
        text = self.string(node, path).strip()
        if "\n" in text:
            raise self.error(node.line, path, "must be a single line")
        return text

    def matching(self, node: _Node, path: str, pattern: re.Pattern[str], hint: str) -> str:
        text = self.string(node, path)
        if not pattern.fullmatch(text):
            raise self.error(node.line, path, f"{text!r} is not valid: {hint}")
        return text

    def text_value(self, node: _Node, path: str) -> str:
        """A string; integers are accepted and turned into their decimal text."""
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            return str(node.value)
        if not isinstance(node.value, str):
            hint = f"; quote it: '{node.value}'" if isinstance(node.value, float | bool) else ""
            raise self.error(node.line, path, f"expected a string, got {_kind(node.value)}{hint}")
        return node.value

    def boolean(self, node: _Node, path: str) -> bool:
        if not isinstance(node.value, bool):
            raise self.error(node.line, path, f"expected true or false, got {_kind(node.value)}")
        return node.value

    def integer(self, node: _Node, path: str, low: int, high: int) -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node.line, path, f"expected an integer, got {_kind(value)}")
        if not low <= value <= high:
            raise self.error(node.line, path, f"must be between {low} and {high}, got {value}")
        return value

    def number(self, node: _Node, path: str, low: float, high: float, *, low_open: bool = False) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(node.line, path, f"expected a number, got {_kind(value)}")
        if value > high or value < low or (low_open and value == low):
            bound = f"more than {low:g}" if low_open else f"at least {low:g}"
            raise self.error(node.line, path, f"must be {bound} and at most {high:g}, got {value}")
        return float(value)

    def regex(self, node: _Node, path: str) -> str:
        text = self.string(node, path)
        try:
            re.compile(text)
        except re.error as exc:
            raise self.error(node.line, path, f"invalid regular expression: {exc}") from None
        return text

    def string_list(self, node: _Node, path: str) -> tuple[str, ...]:
        if not isinstance(node.value, list):
            raise self.error(node.line, path, f"expected a list, got {_kind(node.value)}")
        items = tuple(self.text_value(item, f"{path}[{i}]") for i, item in enumerate(node.value))
        for i, item in enumerate(items):
            if item in items[:i]:
                raise self.error(node.value[i].line, f"{path}[{i}]", f"duplicate choice {item!r}")
        return items

    # procedure

    def procedure(self, root: _Node) -> Procedure:
        fields = self.mapping(root, "", PROCEDURE_KEYS, "a procedure (a mapping)")
        procedure_id = title = version = description = ""
        with self.collect():
            procedure_id = self.matching(
                self.required(fields, "id", root, ""), "id", ID_RE,
                "use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        title_node = fields.get("title")
        with self.collect():
            title = self.line_text(self.required(fields, "title", root, ""), "title")
        with self.collect():
            version_node = self.required(fields, "version", root, "")
            version = self.text_value(version_node, "version")
            if not VERSION_RE.fullmatch(version):
                raise self.error(
                    version_node.line, "version",
                    f"{version!r} is not valid: use letters, digits and '.', '_', '+', '-' (e.g. '1.2')",
                )
        if "description" in fields:
            with self.collect():
                description = self.string(fields["description"], "description", allow_empty=True)
        targets = None
        if "targets" in fields:
            with self.collect():
                targets = self.line_text(fields["targets"], "targets")
        variables: tuple[Variable, ...] = ()
        declared: dict[str, Variable | None] = {}
        if "variables" in fields:
            with self.collect():
                variables, declared = self.variables(fields["variables"])
        steps: tuple[Step, ...] = ()
        with self.collect():
            steps = self.steps(self.required(fields, "steps", root, ""), declared)
        serial: tuple[int | str, ...] = ()
        if "serial" in fields:
            with self.collect():
                serial = self.serial(fields["serial"])
        max_fail = None
        if "max_fail_percentage" in fields:
            with self.collect():
                max_fail = self.number(fields["max_fail_percentage"], "max_fail_percentage", 0, 100)
        strategy = DEFAULT_STRATEGY
        if "strategy" in fields:
            with self.collect():
                strategy = self.string(fields["strategy"], "strategy")
                if strategy not in STRATEGIES:
                    raise self.error(
                        fields["strategy"].line, "strategy",
                        f"must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
                        f"{_did_you_mean(strategy, STRATEGIES)}",
                    )
        if title_node is not None and isinstance(title_node.value, str):
            with self.collect():
                self.check_text_names(title_node, "title", declared)
        if "description" in fields and isinstance(fields["description"].value, str):
            with self.collect():
                self.check_text_names(fields["description"], "description", declared)
        if self.problems:
            raise ProcedureFormatError.of(self.problems)
        return Procedure(
            id=procedure_id, title=title, version=version, description=description,
            targets=targets, variables=variables, steps=steps, serial=serial,
            max_fail_percentage=max_fail, strategy=strategy,
        )

    def variables(self, node: _Node) -> tuple[tuple[Variable, ...], dict[str, Variable | None]]:
        """The valid variables, and every declared name (None: that variable has errors)."""
        if not isinstance(node.value, list):
            raise self.error(node.line, "variables", f"expected a list of variables, got {_kind(node.value)}")
        result: list[Variable] = []
        declared: dict[str, Variable | None] = {}
        first_line: dict[str, int | None] = {}
        for index, item in enumerate(node.value):
            name: str | None = None
            variable: Variable | None = None
            with self.collect():
                name, variable = self.variable(item, f"variables[{index}]")
            if name is None:
                continue
            if name in first_line:
                self.problems.append(self.error(
                    item.line, f"variables[{index}].name",
                    f"duplicate variable {name!r} (first at line {first_line[name]})",
                ))
                continue
            first_line[name] = item.line
            declared[name] = variable
            if variable is not None:
                result.append(variable)
        return tuple(result), declared

    def variable(self, node: _Node, path: str) -> tuple[str | None, Variable | None]:
        """The variable's name (None when it has none) and the variable (None when it has errors)."""
        before = len(self.problems)
        fields = self.mapping(node, path, VARIABLE_KEYS, "a variable (a mapping with a name)")
        name: str | None = None
        with self.collect():
            name_node = self.required(fields, "name", node, path)
            text = self.matching(
                name_node, f"{path}.name", VARIABLE_NAME_RE,
                "use letters, digits and '_', starting with a letter or '_'",
            )
            if text in BUILTIN_VARIABLES:
                raise self.error(
                    name_node.line, f"{path}.name",
                    f"{text!r} is built in (set by itop for each host); choose another name",
                )
            name = text
        description = ""
        required = secret = False
        choices: tuple[str, ...] = ()
        regex: str | None = None
        default: str | None = None
        if "description" in fields:
            with self.collect():
                description = self.string(fields["description"], f"{path}.description", allow_empty=True)
        if "required" in fields:
            with self.collect():
                required = self.boolean(fields["required"], f"{path}.required")
        if "secret" in fields:
            with self.collect():
                secret = self.boolean(fields["secret"], f"{path}.secret")
        if "choices" in fields:
            with self.collect():
                choices = self.string_list(fields["choices"], f"{path}.choices")
        if "regex" in fields:
            with self.collect():
                regex = self.regex(fields["regex"], f"{path}.regex")
        if "default" in fields:
            with self.collect():
                default = self.text_value(fields["default"], f"{path}.default")
        with self.collect():
            self.variable_rules(fields, path, choices=choices, regex=regex, default=default,
                                secret=secret, required=required)
        if name is None or len(self.problems) > before:
            return name, None
        variable = Variable(
            name=name, description=description, required=required, default=default,
            choices=choices, regex=regex, secret=secret,
        )
        if default is not None:
            problem = value_problem(variable, default)
            if problem is not None:
                self.problems.append(
                    self.error(fields["default"].line, f"{path}.default", f"the default {problem}"))
                return name, None
        return name, variable

    def variable_rules(
        self, fields: dict[str, _Node], path: str, *, choices: tuple[str, ...],
        regex: str | None, default: str | None, secret: bool, required: bool,
    ) -> None:
        """The rules between a variable's fields."""
        if choices and regex is not None:
            raise self.error(fields["regex"].line, f"{path}.regex", "give either choices or regex, not both")
        if "choices" in fields and isinstance(fields["choices"].value, list) and not fields["choices"].value:
            raise self.error(fields["choices"].line, f"{path}.choices", "must list at least one value")
        if secret and default is not None:
            raise self.error(
                fields["default"].line, f"{path}.default",
                "a secret variable cannot have a default: the value would sit in the file",
            )
        if secret and choices:
            raise self.error(
                fields["choices"].line, f"{path}.choices",
                "a secret variable cannot have choices: they would reveal the value",
            )
        if required and default is not None:
            raise self.error(
                fields["default"].line, f"{path}.default",
                "a required variable has no default (the operator must give it); remove one of them",
            )

    def serial(self, node: _Node) -> tuple[int | str, ...]:
        if isinstance(node.value, list):
            if not node.value:
                raise self.error(node.line, "serial", "an empty list; remove serial to run all targets at once")
            return tuple(self.serial_item(item, f"serial[{i}]") for i, item in enumerate(node.value))
        return (self.serial_item(node, "serial"),)

    def serial_item(self, node: _Node, path: str) -> int | str:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise self.error(
                    node.line, path,
                    f"must be at least 1, got {value} (remove serial to run all targets at once)",
                )
            return value
        if isinstance(value, str):
            match = PERCENT_RE.fullmatch(value.strip())
            if match and 1 <= int(match.group(1)) <= 100:
                return f"{int(match.group(1))}%"
        raise self.error(
            node.line, path,
            f"expected a number of hosts or a percentage from '1%' to '100%', got {_kind(value)}",
        )

    # steps

    def steps(self, node: _Node, declared: Declared) -> tuple[Step, ...]:
        if not isinstance(node.value, list):
            raise self.error(node.line, "steps", f"expected a list of steps, got {_kind(node.value)}")
        if not node.value:
            raise self.error(node.line, "steps", "a procedure needs at least one step")
        result: list[Step] = []
        first_line: dict[str, int | None] = {}
        for index, item in enumerate(node.value):
            path = f"steps[{index}]"
            step_id: str | None = None
            step: Step | None = None
            with self.collect():
                step_id, step = self.step(item, path, declared)
            if step_id is None:
                continue
            id_line = item.value["id"].line
            if step_id in first_line:
                self.problems.append(self.error(
                    id_line, f"{path}.id",
                    f"duplicate step id {step_id!r} (first at line {first_line[step_id]})",
                ))
                continue
            first_line[step_id] = id_line
            if step is not None:
                result.append(step)
        return tuple(result)

    def step_fields(self, node: _Node, path: str) -> tuple[str | None, dict[str, _Node]]:
        """The step's kind (None when missing or unknown) and its fields allowed for that kind.

        Each key the kind does not allow is recorded, with the keys it does.
        """
        if not isinstance(node.value, dict):
            raise self.error(node.line, path, f"expected a step (a mapping), got {_kind(node.value)}")
        kind: str | None = None
        with self.collect():
            kind_node = self.required(node.value, "kind", node, path)
            text = self.string(kind_node, f"{path}.kind")
            if text not in STEP_KINDS:
                raise self.error(
                    kind_node.line, f"{path}.kind",
                    f"must be one of {', '.join(STEP_KINDS)}, got {text!r}{_did_you_mean(text, STEP_KINDS)}",
                )
            kind = text
        allowed = STEP_KEYS_BY_KIND[kind] if kind is not None else STEP_KEYS
        fields: dict[str, _Node] = {}
        for key, value in node.value.items():
            if key in allowed:
                fields[key] = value
                continue
            line = node.key_lines.get(key, node.line)
            if kind is not None and key in STEP_KEYS:
                kinds = [k for k, keys in STEP_KEYS_BY_KIND.items() if key in keys]
                message = f"not allowed in a {kind} step (only in: {', '.join(kinds)} steps)"
            else:
                where = f" of a {kind} step" if kind is not None else ""
                message = (f"unknown key{_did_you_mean(key, allowed)}; known keys{where}: "
                           f"{', '.join(allowed)}")
            self.problems.append(self.error(line, _join(path, key), message))
        return kind, fields

    def step(self, node: _Node, path: str, declared: Declared) -> tuple[str | None, Step | None]:
        """The step's id (None when it has no valid one) and the step (None when it has errors)."""
        before = len(self.problems)
        kind, fields = self.step_fields(node, path)
        step_id: str | None = None
        with self.collect():
            step_id = self.matching(
                self.required(fields, "id", node, path), f"{path}.id", STEP_ID_RE,
                "use lowercase letters, digits, '_' and '-', starting with a letter or digit",
            )
        title = ""
        with self.collect():
            title_node = self.required(fields, "title", node, path)
            title = self.line_text(title_node, f"{path}.title")
            self.check_text_names(title_node, f"{path}.title", declared)
        instructions = ""
        instructions_ok = True
        if "instructions" in fields:
            instructions_ok = False
            with self.collect():
                instructions = self.string(fields["instructions"], f"{path}.instructions", allow_empty=True)
                instructions_ok = True
                self.check_text_names(fields["instructions"], f"{path}.instructions", declared)
        if kind is None:
            return step_id, None
        if kind == "manual" and instructions_ok and not instructions.strip():
            self.problems.append(
                self.error(node.line, f"{path}.instructions", "is required: say what the person must do"))

        command = None
        if kind in ("command", "check"):
            with self.collect():
                command_node = self.required(fields, "command", node, path)
                command = self.string(command_node, f"{path}.command")
                self.check_command(command_node, f"{path}.command", declared)

        mutates = default_mutates(kind)
        if "mutates" in fields:
            with self.collect():
                mutates = self.boolean(fields["mutates"], f"{path}.mutates")
                if kind == "check" and mutates:
                    raise self.error(
                        fields["mutates"].line, f"{path}.mutates",
                        "a check is read-only by definition; use a command step for changes",
                    )
        trainee_safe = skip_in_check = False
        if "trainee_safe" in fields:
            with self.collect():
                trainee_safe = self.boolean(fields["trainee_safe"], f"{path}.trainee_safe")
        if "skip_in_check_mode" in fields:
            with self.collect():
                skip_in_check = self.boolean(fields["skip_in_check_mode"], f"{path}.skip_in_check_mode")
        expect = Expect()
        if "expect" in fields:
            with self.collect():
                expect = self.expect(fields["expect"], f"{path}.expect")
        retries: int | None = 0
        if "retries" in fields:
            retries = None  # until it is known to be valid
            with self.collect():
                retries = self.integer(fields["retries"], f"{path}.retries", 0, MAX_RETRIES)
        delay = 0.0
        if "delay" in fields:
            with self.collect():
                delay = self.number(fields["delay"], f"{path}.delay", 0, MAX_SECONDS)
                if delay > 0 and retries == 0:
                    raise self.error(fields["delay"].line, f"{path}.delay", "only means something with retries")
        until = None
        if "until" in fields:
            with self.collect():
                until = self.until(fields["until"], f"{path}.until")
                if retries:
                    raise self.error(
                        fields["retries"].line, f"{path}.retries",
                        "give either until (poll for a time) or retries, not both",
                    )
        timeout: float | None = None
        if kind in ("command", "check"):
            timeout = DEFAULT_STEP_TIMEOUT
            if "timeout" in fields:
                with self.collect():
                    timeout = self.number(fields["timeout"], f"{path}.timeout", 0, MAX_SECONDS, low_open=True)

        variable = None
        if kind == "input":
            with self.collect():
                variable_node = self.required(fields, "variable", node, path)
                variable = self.string(variable_node, f"{path}.variable")
                if variable not in declared:
                    raise self.error(
                        variable_node.line, f"{path}.variable",
                        f"{variable!r} is not declared under variables"
                        f"{_did_you_mean(variable, declared)}",
                    )
        if step_id is None or len(self.problems) > before:
            return step_id, None
        return step_id, Step(
            id=step_id, title=title, kind=kind, mutates=mutates, instructions=instructions,
            command=command, expect=expect, retries=retries or 0, delay=delay, until=until,
            timeout=timeout, trainee_safe=trainee_safe, variable=variable,
            skip_in_check_mode=skip_in_check,
        )

    def expect(self, node: _Node, path: str) -> Expect:
        fields = self.mapping(node, path, EXPECT_KEYS, "a mapping with exit and/or regex")
        exit_codes: tuple[int, ...] = DEFAULT_EXPECTED_EXIT
        if "exit" in fields:
            exit_node = fields["exit"]
            if isinstance(exit_node.value, list):
                if not exit_node.value:
                    raise self.error(exit_node.line, f"{path}.exit", "must list at least one exit status")
                exit_codes = tuple(
                    self.integer(item, f"{path}.exit[{i}]", 0, 255)
                    for i, item in enumerate(exit_node.value)
                )
            else:
                exit_codes = (self.integer(exit_node, f"{path}.exit", 0, 255),)
        regex = self.regex(fields["regex"], f"{path}.regex") if "regex" in fields else None
        return Expect(exit=exit_codes, regex=regex)

    def until(self, node: _Node, path: str) -> Until:
        fields = self.mapping(node, path, UNTIL_KEYS, "a mapping with timeout and interval")
        timeout = self.number(
            self.required(fields, "timeout", node, path), f"{path}.timeout", 0, MAX_SECONDS,
            low_open=True,
        )
        interval = (
            self.number(fields["interval"], f"{path}.interval", 0, MAX_SECONDS, low_open=True)
            if "interval" in fields else min(Until(timeout=timeout).interval, timeout)
        )
        if interval > timeout:
            raise self.error(
                fields["interval"].line, f"{path}.interval",
                f"is longer than the timeout ({interval:g} > {timeout:g})",
            )
        return Until(timeout=timeout, interval=interval)

    # templates

    def check_command(self, node: _Node, path: str, declared: Declared) -> None:
        text: str = node.value
        try:
            found = placeholders(text)
        except TemplateError as exc:
            raise self.error(node.line_at(exc.offset), path, exc.message) from None
        for placeholder in found:
            self.check_name(node, path, placeholder.name, placeholder.start, declared)
        for placeholder in quoted_placeholders(text):
            raise self.error(
                node.line_at(placeholder.start), path,
                f"{{{{ {placeholder.name} }}}} stands inside shell quotes; itop quotes values "
                f"itself, so write it bare (e.g. {placeholder.name}={{{{ {placeholder.name} }}}} "
                f'then "${placeholder.name}")',
            )

    def check_text_names(self, node: _Node, path: str, declared: Declared) -> None:
        try:
            found = placeholders(node.value)
        except TemplateError as exc:
            raise self.error(node.line_at(exc.offset), path, exc.message) from None
        for placeholder in found:
            self.check_name(node, path, placeholder.name, placeholder.start, declared)

    def check_name(
        self, node: _Node, path: str, name: str, offset: int, declared: Declared
    ) -> None:
        if name in declared or name in BUILTIN_VARIABLES:
            return
        known = [*declared, *BUILTIN_VARIABLES]
        raise self.error(
            node.line_at(offset), path,
            f"{{{{ {name} }}}} names no declared variable{_did_you_mean(name, known)}; "
            f"declare it under variables (known: {', '.join(known)})",
        )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- dumping -------------------------------------------------------------------


def _minimal_dict(procedure: Procedure) -> dict[str, Any]:
    """:meth:`Procedure.to_dict` without the fields that hold their default."""
    data: dict[str, Any] = {"id": procedure.id, "title": procedure.title, "version": procedure.version}
    if procedure.description:
        data["description"] = procedure.description
    if procedure.targets is not None:
        data["targets"] = procedure.targets
    if procedure.serial:
        data["serial"] = procedure.serial[0] if len(procedure.serial) == 1 else list(procedure.serial)
    if procedure.max_fail_percentage is not None:
        data["max_fail_percentage"] = procedure.max_fail_percentage
    if procedure.strategy != DEFAULT_STRATEGY:
        data["strategy"] = procedure.strategy
    if procedure.variables:
        data["variables"] = [_minimal_variable(v) for v in procedure.variables]
    data["steps"] = [_minimal_step(s) for s in procedure.steps]
    return data


def _minimal_variable(variable: Variable) -> dict[str, Any]:
    data: dict[str, Any] = {"name": variable.name}
    if variable.description:
        data["description"] = variable.description
    if variable.required:
        data["required"] = True
    if variable.default is not None:
        data["default"] = variable.default
    if variable.choices:
        data["choices"] = list(variable.choices)
    if variable.regex is not None:
        data["regex"] = variable.regex
    if variable.secret:
        data["secret"] = True
    return data


def _minimal_step(step: Step) -> dict[str, Any]:
    data: dict[str, Any] = {"id": step.id, "title": step.title, "kind": step.kind}
    if step.instructions:
        data["instructions"] = step.instructions
    if step.command is not None:
        data["command"] = step.command
    if step.variable is not None:
        data["variable"] = step.variable
    if step.expect != Expect():
        expect: dict[str, Any] = {}
        if step.expect.exit != DEFAULT_EXPECTED_EXIT:
            expect["exit"] = step.expect.exit[0] if len(step.expect.exit) == 1 else list(step.expect.exit)
        if step.expect.regex is not None:
            expect["regex"] = step.expect.regex
        data["expect"] = expect
    if step.retries:
        data["retries"] = step.retries
    if step.delay:
        data["delay"] = step.delay
    if step.until is not None:
        data["until"] = {"timeout": step.until.timeout, "interval": step.until.interval}
    if step.timeout is not None and step.timeout != DEFAULT_STEP_TIMEOUT:
        data["timeout"] = step.timeout
    if step.mutates != default_mutates(step.kind):
        data["mutates"] = step.mutates
    if step.trainee_safe:
        data["trainee_safe"] = True
    if step.skip_in_check_mode:
        data["skip_in_check_mode"] = True
    return data


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks so commands stay readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_BlockDumper.add_representer(str, _represent_str)
