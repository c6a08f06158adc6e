"""The admin's live view of active calls: its websocket and what it shows (docs/operations.md,
"Live view")."""
