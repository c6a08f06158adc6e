"""The gateway's API: JSON-RPC, REST resources and the voice_call tool.

docs/design.md, "6. HTTP and websocket surface".
"""
