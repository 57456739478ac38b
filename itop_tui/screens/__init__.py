"""One module per pane or dialog."""
