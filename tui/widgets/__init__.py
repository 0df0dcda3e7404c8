"""The inspector's widgets: one small module per pane."""
