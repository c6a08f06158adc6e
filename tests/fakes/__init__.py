"""Fakes: carrier drivers, adapter-level fakes per carrier, tunnels, and the one signing helper."""
