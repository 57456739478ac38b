"""The form of a new procedure run: targets, variables, check mode, checked as typed.

One row per field: a label, the input, and a hint that turns into the
problem when the value breaks the variable's rules. A secret variable is
typed into a password field; its value leaves the form only when the run
starts, and the field is then emptied.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Static

from itop_tui.domain.models import Inventory
from itop_tui.domain.procedure import Procedure, Step, Variable
from itop_tui.domain.selectors import SelectorError, select_hosts
from itop_tui.domain.substitution import value_problem

TARGET = "target"
"""The name problems with the host selector are reported under."""


@dataclass(frozen=True)
class FormValues:
    """What the form holds: the selector, the values given (secrets too), the problems."""

    selector: str
    values: dict[str, str]
    problems: list[tuple[str, str]]
    check: bool


def placeholder(variable: Variable) -> str:
    """What an empty field for ``variable`` shows."""
    if variable.secret:
        return "secret: typed, never shown or stored"
    if variable.choices:
        return " | ".join(variable.choices)
    return variable.name


def variable_hint(variable: Variable, asked_by: Step | None) -> str:
    """The description and rules of ``variable``, shown next to its field."""
    parts = [variable.description] if variable.description else []
    if asked_by is not None:
        parts.append(f"asked by step {asked_by.id} when empty")
    elif variable.required:
        parts.append("required")
    if variable.regex:
        parts.append(f"/{variable.regex}/")
    return " · ".join(parts)


class RunForm(Grid):
    """Targets (a host selector), one field per variable and check mode.

    Posts :class:`RunForm.Changed` whenever the hosts picked, a shown value or
    check mode change. Enter in a field moves to the next one.
    """

    class Changed(Message):
        """The targets, the non-secret values or check mode changed."""

        def __init__(self, targets: list[str], values: dict[str, str], check: bool) -> None:
            super().__init__()
            self.targets = targets
            self.values = values
            self.check = check

    def __init__(self, procedure: Procedure, *, check: bool = False, id: str | None = None) -> None:
        """A form for a run of ``procedure``, check mode on when ``check``."""
        super().__init__(id=id)
        self.procedure = procedure
        self.asked_by = {s.variable: s for s in procedure.steps if s.kind == "input" and s.variable}
        self.inventory: Inventory | None = None
        self.targets: list[str] = []
        self._check = check

    def compose(self) -> ComposeResult:
        """Label, field and hint for the targets, each variable and check mode."""
        procedure = self.procedure
        yield Label("Targets", classes="form-label")
        yield Input(procedure.targets or "", id="run-target", compact=True,
                    placeholder="host selector, e.g. web:&production")
        yield Static("reading the inventory…", id="hint-target", classes="form-hint", markup=False)
        for variable in procedure.variables:
            mark = " *" if variable.required and variable.name not in self.asked_by else ""
            yield Label(f"{variable.name}{mark}", classes="form-label", markup=False)
            yield Input(variable.default or "", password=variable.secret, compact=True,
                        id=f"var-{variable.name}", placeholder=placeholder(variable))
            yield Static(variable_hint(variable, self.asked_by.get(variable.name)),
                         id=f"hint-{variable.name}", classes="form-hint", markup=False)
        yield Checkbox("Check mode", self._check, id="run-check", compact=True)
        yield Static(self._check_hint(), id="run-check-hint", classes="form-hint", markup=False)
        yield Static("ctrl+r starts the run", classes="form-hint", markup=False)

    @property
    def check(self) -> bool:
        """Whether check mode is on."""
        return self._check

    def _check_hint(self) -> str:
        if self._check:
            return "runs only checks and read-only steps, shows what else would run, changes nothing"
        return "off: steps that change things run, each confirmed first"

    def shown_values(self) -> dict[str, str]:
        """The values typed so far, secrets left out."""
        return {v.name: self.query_one(f"#var-{v.name}", Input).value
                for v in self.procedure.variables if not v.secret}

    def _changed(self) -> None:
        self.post_message(self.Changed(list(self.targets), self.shown_values(), self._check))

    # -- targets ------------------------------------------------------------------

    def set_inventory(self, inventory: Inventory) -> None:
        """Match the selector against ``inventory`` from now on."""
        self.inventory = inventory
        self._match_targets()

    @on(Input.Changed, "#run-target")
    def _target_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._match_targets()

    def _match_targets(self) -> None:
        hint = self.query_one("#hint-target", Static)
        text = self.query_one("#run-target", Input).value.strip()
        if self.inventory is None:
            return
        self.targets = []
        if not text:
            hint.update("give a host selector (web, tag:db, web:&production, all)", layout=False)
        else:
            try:
                hosts = select_hosts(self.inventory, text)
            except SelectorError as exc:
                hint.update(str(exc), layout=False)
            else:
                self.targets = [h.name for h in hosts]
                names = ", ".join(self.targets[:6]) + (" …" if len(self.targets) > 6 else "")
                hint.update(f"matches {len(hosts)} host{'s' if len(hosts) != 1 else ''}: {names}"
                            if hosts else "matches no host", layout=False)
        hint.set_class(not self.targets and bool(text), "field-error")
        self._changed()

    # -- variables ----------------------------------------------------------------

    def problem(self, variable: Variable, value: str) -> str | None:
        """Why ``value`` cannot start the run, or None (an empty input variable is asked later)."""
        if value == "":
            if variable.name in self.asked_by:
                return None
            return "is required" if variable.required else None
        return value_problem(variable, value)

    @on(Input.Changed)
    def _variable_changed(self, event: Input.Changed) -> None:
        input_id = event.input.id or ""
        if not input_id.startswith("var-"):
            return
        variable = self.procedure.variable(input_id.removeprefix("var-"))
        if variable is None:
            return
        event.stop()
        problem = self.problem(variable, event.value)
        self.show_problem(variable.name, problem)
        if not variable.secret:
            self._changed()

    def show_problem(self, name: str, problem: str | None) -> None:
        """Show ``problem`` next to the field ``name`` (:data:`TARGET` or a variable), or its hint."""
        hints = self.query(f"#hint-{name}")
        if not hints:
            return
        hint = hints.first(Static)
        if problem is not None:
            hint.update(f"{name} {problem}", layout=False)
        else:
            variable = self.procedure.variable(name)
            if variable is not None:
                hint.update(variable_hint(variable, self.asked_by.get(name)), layout=False)
        hint.set_class(problem is not None, "field-error")

    def read(self) -> FormValues:
        """The selector, the values given (secrets included, in memory only) and any problems."""
        values: dict[str, str] = {}
        problems: list[tuple[str, str]] = []
        selector = self.query_one("#run-target", Input).value.strip()
        if not selector:
            problems.append((TARGET, "give a host selector first"))
        for variable in self.procedure.variables:
            value = self.query_one(f"#var-{variable.name}", Input).value
            problem = self.problem(variable, value)
            if problem is not None:
                problems.append((variable.name, problem))
            elif value != "":
                values[variable.name] = value
        return FormValues(selector, values, problems, self._check)

    def focus_field(self, name: str) -> None:
        """Put the cursor in the field ``name``."""
        field = self.query_one("#run-target" if name == TARGET else f"#var-{name}", Input)
        self.screen.set_focus(field)

    def forget_secrets(self) -> None:
        """Empty the secret fields (the run has their values now)."""
        for variable in self.procedure.variables:
            if variable.secret:
                self.query_one(f"#var-{variable.name}", Input).value = ""

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()

    # -- check mode ---------------------------------------------------------------

    def toggle_check(self) -> None:
        """Turn check mode on or off."""
        checkbox = self.query_one("#run-check", Checkbox)
        checkbox.value = not checkbox.value

    @on(Checkbox.Changed, "#run-check")
    def _check_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._check = event.value
        self.query_one("#run-check-hint", Static).update(self._check_hint(), layout=False)
        self._changed()
