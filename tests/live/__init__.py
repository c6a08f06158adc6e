"""The admin live view: its websocket and rows."""
