"""Carrier adapters, webhook security and speech providers; never imports the ORM."""
