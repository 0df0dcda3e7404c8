"""prefix-tui's user interface: the Textual inspector, the headless report and the CLI."""
