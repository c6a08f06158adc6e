"""Template tags of the calls admin pages."""
