"""Guided lessons: a lesson is data (a TOML file next to its small trace, under
traces/lessons/), loaded here without any UI; the TUI's lesson screen walks its steps over
the same records the inspector shows, and checks each question against vLLM's record."""
