"""One Screen per view of the inspector (tui/app.py picks one by the backend's view)."""
