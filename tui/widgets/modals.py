"""Modal screens: the help text, an error with its traceback, and one-line prompts."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui.widgets.help_text import Guide, HelpBody
from tui.widgets.safe import safe_text


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def __init__(self, guide: Guide) -> None:
        super().__init__()
        self.guide = guide

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label(Text("prefix-tui — what you are looking at"), id="help-title")
            with VerticalScroll(id="help-scroll"):
                yield HelpBody(self.guide, id="help-body")
            yield Label(Text("↑/↓ scroll · Esc or ? close"), classes="modal-hint")


class ErrorScreen(ModalScreen[None]):
    """A message and, for errors raised inside vLLM, the traceback (all untrusted-safe)."""

    BINDINGS = [Binding("escape,q,e", "dismiss", "Close")]

    def __init__(self, title: str, message: str, traceback: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.traceback = traceback

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Label(Text(safe_text(self.title_text)), id="error-title")
            yield Static(Text(safe_text(self.message)), id="error-message")
            if self.traceback:
                with VerticalScroll(id="error-scroll"):
                    yield Static(Text(safe_text(self.traceback, keep_newlines=True)), id="error-traceback")
            yield Label(Text("Esc close · the app keeps running"), classes="modal-hint")


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line (a step number, a request id, a block id); None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, placeholder: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Label(Text(self.prompt))
            yield Input(placeholder=self.placeholder, id="prompt-input")
            yield Label(Text("Enter go · Esc cancel"), classes="modal-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
