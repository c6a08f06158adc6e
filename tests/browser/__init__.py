"""The admin in a real browser (headless Chromium from the system packages)."""
