"""The gateway's API: JSON-RPC, REST resources and the voice_call tool (DESIGN §6)."""
