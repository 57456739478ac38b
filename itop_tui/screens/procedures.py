"""The Procedures pane: the procedure library, searched, with each procedure in detail.

The library is read from the store in a thread worker and then searched in
memory. The detail on the right is one Markdown document per procedure:
its description, variables and steps with their explanations and commands.
From here a procedure is run (``r``), run in check mode (``c``), and the
runs list opens (``u``). People whose role or ``--read-only`` forbids an
action see it greyed out in the footer, with the reason in the status line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Markdown, Static

from itop_tui.bundled import procedures_dir
from itop_tui.domain.output import strip_control
from itop_tui.domain.procedure import DEFAULT_STEP_TIMEOUT, Procedure, Step, Variable
from itop_tui.domain.procedure_loader import ProcedureFormatError, load_procedure
from itop_tui.screens.procedure_access import ShowsAllowedKeys, import_refusal, role_of, run_refusal
from itop_tui.screens.procedure_run import ProcedureRunScreen
from itop_tui.screens.procedure_runs import ProcedureRunsScreen
from itop_tui.screens.store_follow import follow_store
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import PROCEDURES_FILE, ProcedureRepository, StoredProcedure
from itop_tui.services.store_watch import StoreWatch
from itop_tui.widgets.filter_input import FilterInput
from itop_tui.widgets.host_table import Clock
from itop_tui.widgets.pane_tabs import PaneTabs
from itop_tui.widgets.step_list import one_line

DETAIL_DELAY = 0.08
"""Seconds the cursor must rest before the detail is rendered again (see the Inventory pane)."""

SEARCH_PLACEHOLDER = "/ search procedures: words in id, title, description or steps"
PROCEDURE_SUFFIXES = (".yaml", ".yml")


# -- the library -----------------------------------------------------------------------


def haystack(procedure: Procedure) -> str:
    """The text a search looks in: id, title, description, variables, step titles."""
    parts = [procedure.id, procedure.title, procedure.description]
    parts += [v.name for v in procedure.variables]
    parts += [f"{s.id} {s.title} {s.kind}" for s in procedure.steps]
    return " ".join(parts).lower()


def matches(procedure: Procedure, text: str) -> bool:
    """True when every word of ``text`` occurs in the procedure's searchable text."""
    words = text.lower().split()
    hay = haystack(procedure)
    return all(word in hay for word in words)


def _cell(value: object) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return " ".join(strip_control(str(value)).split()).replace("|", "\\|")


def _fence(text: str, language: str) -> list[str]:
    """``text`` in a code fence longer than any run of backticks inside it."""
    body = strip_control(text).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", *body.splitlines(), fence]


def _code(text: str) -> str:
    """``text`` as a Markdown code span, shown exactly as written (backslashes too).

    The span's backticks are longer than any run of backticks inside, and
    padded by a space when ``text`` starts or ends with one.
    """
    body = " ".join(strip_control(text).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def pattern_text(regex: str) -> str:
    """A regex as the YAML holds it, said as a pattern: ``regex `/[^\\n]+```.

    No slashes are added around it: a pattern that starts with ``/`` (a
    path) would read ``//…/``.
    """
    return f"regex {_code(regex)}"


def default_text(default: str) -> str:
    """``default `x```, or ``default empty`` (an empty code span would show as two backticks)."""
    return f"default {_code(default)}" if default else "default empty"


def variable_rules(variable: Variable) -> str:
    """``required, one of a, b, matching regex `…`, default `x``` and the like."""
    rules = ["required" if variable.required else "optional"]
    if variable.secret:
        rules.append("secret (never shown or stored)")
    if variable.choices:
        rules.append("one of " + ", ".join(variable.choices))
    if variable.regex:
        rules.append(f"matching {pattern_text(variable.regex)}")
    if variable.default is not None:
        rules.append(default_text(variable.default))
    return ", ".join(rules)


def step_flags(step: Step) -> str:
    """``command · changes things · trainee-safe`` and the like."""
    flags = [step.kind, "changes things" if step.mutates else "read-only"]
    if step.trainee_safe:
        flags.append("trainee-safe")
    if step.skip_in_check_mode:
        flags.append("skipped in check mode")
    if step.until is not None:
        flags.append(f"polled every {step.until.interval:g} s for {step.until.timeout:g} s")
    if step.retries:
        flags.append(f"{step.retries} retries")
    if step.timeout is not None and step.timeout != DEFAULT_STEP_TIMEOUT:
        flags.append(f"timeout {step.timeout:g} s")
    if step.variable:
        flags.append(f"asks for {step.variable}")
    return " · ".join(flags)


def procedure_markdown(stored: StoredProcedure) -> str:
    """The procedure as a Markdown document: what it is, its variables, its steps."""
    procedure = stored.procedure
    lines = [f"# {_cell(procedure.title)}", ""]
    facts = [f"`{procedure.id}`", f"version {_cell(procedure.version)}",
             f"{len(procedure.steps)} steps", "changes things" if procedure.mutates else "read-only"]
    lines += [" · ".join(facts), ""]
    batching = [f"targets `{_cell(procedure.targets)}`" if procedure.targets else "no default targets",
                f"strategy {procedure.strategy}"]
    if procedure.serial:
        batching.append("serial " + ", ".join(str(s) for s in procedure.serial))
    if procedure.max_fail_percentage is not None:
        batching.append(f"max_fail_percentage {procedure.max_fail_percentage:g}")
    lines += [" · ".join(batching), ""]
    lines += [f"sha256 `{stored.hash[:16]}` · imported {_cell(stored.imported_at)} by "
              f"{_cell(stored.imported_by)} from {_cell(stored.source)}", ""]
    if procedure.description.strip():
        lines += [strip_control(procedure.description).strip(), ""]
    if procedure.variables:
        lines += ["## Variables", ""]
        for variable in procedure.variables:
            rules = variable_rules(variable)
            about = f": {_cell(variable.description)}" if variable.description else ""
            lines.append(f"- **`{variable.name}`** ({rules}){about}")
        lines.append("")
    lines += ["## Steps", ""]
    for number, step in enumerate(procedure.steps, 1):
        lines += [f"### {number}. {_cell(step.title)}", "", f"`{step.id}` · {step_flags(step)}", ""]
        if step.instructions.strip():
            lines += [strip_control(step.instructions).strip(), ""]
        if step.command:
            lines += [*_fence(step.command, "sh"), ""]
        expect = []
        if step.runs_command and step.expect.exit != (0,):
            expect.append("exit " + " or ".join(str(c) for c in step.expect.exit))
        if step.expect.regex:
            expect.append(f"output matching {pattern_text(step.expect.regex)}")
        if expect:
            lines += ["Expects " + ", ".join(expect) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def import_builtin_library(services: Services) -> list[tuple[str, str, str]]:
    """Validate and store the built-in procedures, all or nothing (blocking).

    Returns ``(outcome, id, version)`` per procedure; audits each added or
    updated one as ``procedure.import``, as ``itop procedure import --builtin`` does.
    """
    services.require_operator("import procedures")
    refusal = import_refusal(services)
    if refusal is not None:
        raise PermissionError(refusal)
    files = sorted(p for p in procedures_dir().rglob("*") if p.suffix in PROCEDURE_SUFFIXES)
    loaded: list[tuple[Procedure, str]] = []
    errors: list[str] = []
    for path in files:
        try:
            loaded.append((load_procedure(path.read_text(encoding="utf-8"), str(path)),
                           f"builtin:{path.name}"))
        except (OSError, UnicodeDecodeError, ProcedureFormatError) as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError(f"{len(errors)} built-in procedures are invalid, nothing imported: {errors[0]}")
    repository = ProcedureRepository.in_data_dir(services.settings.data_dir)
    outcomes: list[tuple[str, str, str]] = []
    for outcome, previous, stored in repository.save_many(loaded, services.actor):
        if outcome != "unchanged":
            services.audit.append("procedure.import", stored.id, {
                "id": stored.id, "version": stored.version, "hash": stored.hash,
                "outcome": outcome, "source": stored.source,
                "previous_version": previous.version if previous else None,
                "previous_hash": previous.hash if previous else None,
            })
        outcomes.append((outcome, stored.id, stored.version))
    return outcomes


@dataclass(frozen=True)
class LibraryView:
    """The procedures shown: those matching the search, in id order."""

    shown: list[StoredProcedure]
    total: int


class ProceduresScreen(ReportsWorkerErrors, ShowsAllowedKeys):
    """The procedure library: a searchable list and the selected procedure in detail."""

    TITLE = "Procedures"
    AUTO_FOCUS = "#procedure-list"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_search", "Search"),
        Binding("r", "run", "Run"),
        Binding("c", "check_run", "Check run"),
        Binding("u", "runs", "Runs"),
        Binding("i", "import_builtin", "Import built-in"),
        Binding("tab", "app.focus_next", "Next panel", show=False),
        Binding("f5", "reload", "Reload", show=False),
        Binding("escape", "escape", "Back to the list", show=False),
    ]

    class LibraryLoaded(Message):
        """The library as read from the store, and what the store had to recover."""

        def __init__(self, procedures: list[StoredProcedure], recovery: list[str]) -> None:
            super().__init__()
            self.procedures = procedures
            self.recovery = recovery

    class LibraryImported(Message):
        """The built-in library was imported: ``(outcome, id, version)`` per procedure."""

        def __init__(self, outcomes: list[tuple[str, str, str]]) -> None:
            super().__init__()
            self.outcomes = outcomes

    def __init__(self, services: Services, clock: Clock | None = None) -> None:
        """Show ``services``' procedure library (``clock`` is unused; panes share one factory)."""
        super().__init__()
        self.services = services
        self.clock = clock
        self.procedures: list[StoredProcedure] | None = None
        self.view = LibraryView([], 0)
        self._detail_timer: Timer | None = None
        self._detail_id: str | None = None
        self.store_watch = StoreWatch.in_data_dir(services.settings.data_dir, PROCEDURES_FILE)
        """The library file as last read: another itop's imports show up by themselves."""

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Search and list on the left, the detail on the right, a status line below."""
        yield Header(icon="≡")
        yield PaneTabs()
        with Horizontal(id="procedures-body"):
            with Vertical(id="procedures-left"):
                yield FilterInput(id="procedure-search", placeholder=SEARCH_PLACEHOLDER)
                yield DataTable(id="procedure-list", cursor_type="row", zebra_stripes=False)
            with VerticalScroll(id="procedure-detail"):
                yield Markdown("", id="procedure-doc", open_links=False)
        yield Static("Loading the procedure library…", id="procedures-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """Set up the list's columns and read the library."""
        table = self.table
        for label, key in (("Procedure", "id"), ("Version", "version"), ("Steps", "steps"),
                           ("Changes", "changes"), ("Title", "title")):
            table.add_column(Text(label), key=key)
        self.load_library()
        follow_store(self, self.store_watch, self.load_library)

    @property
    def table(self) -> DataTable[Text | str]:
        """The procedure list."""
        return self.query_one("#procedure-list", DataTable)

    # -- loading ------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load",
          description="Load the procedure library")
    def load_library(self) -> None:
        """Read every stored procedure (in a thread)."""
        self.store_watch.mark()
        repository = ProcedureRepository.in_data_dir(self.services.settings.data_dir)
        procedures = repository.all()
        recovery = [repository.store.recovery_message] if repository.store.recovery_message else []
        self.post_message(self.LibraryLoaded(procedures, recovery))

    def on_procedures_screen_library_loaded(self, message: LibraryLoaded) -> None:
        """Show the library, searched."""
        self.procedures = message.procedures
        for text in message.recovery:
            self.app.notify(text, title="Store recovered", severity="warning", timeout=20, markup=False)
        self._refilter()

    def action_reload(self) -> None:
        """Read the library again (another itop may have imported procedures)."""
        self.load_library()

    # -- search -------------------------------------------------------------------

    def _refilter(self) -> None:
        if self.procedures is None:
            return
        text = self.query_one("#procedure-search", Input).value.strip()
        shown = [p for p in self.procedures if matches(p.procedure, text)] if text else list(self.procedures)
        self.view = LibraryView(shown, len(self.procedures))
        table = self.table
        keep = self.selected.id if self.selected is not None else None
        table.clear()
        for stored in shown:
            procedure = stored.procedure
            table.add_row(
                Text(procedure.id),
                Text(one_line(procedure.version, 10)),
                Text(str(len(procedure.steps)), justify="right"),
                Text("yes", style="yellow") if procedure.mutates else Text("no", style="dim"),
                Text(one_line(procedure.title, 40)),
                key=procedure.id,
            )
        if keep is not None and any(s.id == keep for s in shown):
            table.move_cursor(row=table.get_row_index(keep))
        self._show_detail_now()
        self._update_status()
        self.refresh_keys()

    @on(Input.Changed, "#procedure-search")
    def _search_changed(self) -> None:
        self._refilter()

    def action_focus_search(self) -> None:
        """Put the cursor in the search box."""
        self.set_focus(self.query_one("#procedure-search", Input))

    def action_escape(self) -> None:
        """Back to the list (from the detail), else clear the search."""
        if self.focused is not self.table:
            self.set_focus(self.table)
            return
        search = self.query_one("#procedure-search", Input)
        if search.value:
            search.value = ""

    # -- detail -------------------------------------------------------------------

    @property
    def selected(self) -> StoredProcedure | None:
        """The procedure under the cursor."""
        table = self.table
        if not self.view.shown or not table.is_valid_row_index(table.cursor_row):
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((s for s in self.view.shown if s.id == key), None)

    @on(DataTable.RowHighlighted, "#procedure-list")
    def _cursor_moved(self) -> None:
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY, self._show_detail_now)
        self.refresh_keys()

    @on(DataTable.RowSelected, "#procedure-list")
    def _chosen(self) -> None:
        self.set_focus(self.query_one("#procedure-detail"))

    def _show_detail_now(self) -> None:
        self._detail_timer = None
        stored = self.selected
        key = stored.id if stored is not None else None
        if key == self._detail_id and key is not None:
            return
        self._detail_id = key
        doc = self.query_one("#procedure-doc", Markdown)
        if stored is None:
            doc.update(self._empty_text())
        else:
            doc.update(procedure_markdown(stored))
        self.query_one("#procedure-detail", VerticalScroll).scroll_home(animate=False)

    def _empty_text(self) -> str:
        if self.procedures is None:
            return "Loading…"
        if not self.procedures:
            hint = ("Press **i** to import the built-in library, or run "
                    "`itop procedure import FILE|DIR`.")
            refusal = import_refusal(self.services)
            if refusal is not None:
                hint = f"Someone with the operator role imports them ({refusal})."
            return f"# No procedures yet\n\n{hint}\n"
        return "# No procedure matches the search\n\nEsc clears the search.\n"

    # -- status -------------------------------------------------------------------

    def status_text(self) -> str:
        """``3 of 12 procedures · search: disk · operator`` plus why actions are off."""
        if self.procedures is None:
            return "Loading the procedure library…"
        parts = [f"{len(self.view.shown)} of {self.view.total} procedures"]
        text = self.query_one("#procedure-search", Input).value.strip()
        if text:
            parts.append(f"search: {text}")
        parts.append(f"{self.services.actor} ({role_of(self.services)})")
        refusal = run_refusal(self.services)
        if refusal is not None:
            parts.append(f"running disabled: {refusal}")
        elif import_refusal(self.services) is not None and not self.procedures:
            parts.append(f"import disabled: {import_refusal(self.services)}")
        return " · ".join(parts)

    def _update_status(self) -> None:
        self.query_one("#procedures-status", Static).update(self.status_text(), layout=False)

    # -- actions ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out what this person may not do (the status line says why)."""
        if action in ("run", "check_run"):
            return None if run_refusal(self.services) is not None or self.selected is None else True
        if action == "import_builtin":
            return None if import_refusal(self.services) is not None else True
        return True

    def action_run(self) -> None:
        """Open the run view of the selected procedure."""
        self._open_run(check=False)

    def action_check_run(self) -> None:
        """Open the run view of the selected procedure, in check mode."""
        self._open_run(check=True)

    def _open_run(self, *, check: bool) -> None:
        stored = self.selected
        if stored is None:
            return
        self.app.push_screen(ProcedureRunScreen(self.services, procedure=stored, check=check))

    def action_runs(self) -> None:
        """Open the list of runs."""
        self.app.push_screen(ProcedureRunsScreen(self.services))

    def action_import_builtin(self) -> None:
        """Import the library shipped with itop."""
        self.app.notify("Importing the built-in procedures…", markup=False)
        self._import_builtin()

    @work(thread=True, exclusive=True, exit_on_error=False, group="import",
          description="Import the built-in procedures")
    def _import_builtin(self) -> None:
        self.post_message(self.LibraryImported(import_builtin_library(self.services)))

    def on_procedures_screen_library_imported(self, message: LibraryImported) -> None:
        """Say what changed and show it."""
        counts: dict[str, int] = {}
        for outcome, _id, _version in message.outcomes:
            counts[outcome] = counts.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        self.app.notify(f"Built-in procedures: {summary or 'none'}.", markup=False)
        self.load_library()
