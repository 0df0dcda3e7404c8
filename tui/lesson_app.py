"""The inspector app opening a lesson: the lesson's view screen with its lesson pane."""

from __future__ import annotations

from collections.abc import Iterable

from engine.backends import BackendEntry, BuildOptions
from engine.lessons.format import Lesson
from engine.model import TraceRequest
from engine.trace.reader import TraceSource
from tui.app import InspectorApp
from tui.screens.inspector import InspectorScreen
from tui.screens.lesson import lesson_screen_for


class LessonApp(InspectorApp):
    def __init__(self, lesson: Lesson, entry: BackendEntry, options: BuildOptions) -> None:
        self.lesson = lesson
        super().__init__(TraceSource(str(lesson.trace)), entry, options)
        self.title = f"prefix-tui · {lesson.title}"

    def make_main(self, source: TraceSource | None, entry: BackendEntry, options: BuildOptions,
                  requests: Iterable[TraceRequest] | None) -> InspectorScreen:
        screen = lesson_screen_for(self.VIEWS[entry.view])
        return screen(self.lesson, source, entry, options, requests=requests)
