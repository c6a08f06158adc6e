"""Every state change of a call lives in this package (docs/architecture.md).

Import services from their modules (`from calls.services.dialling import call_initiate`);
this package re-exports nothing, so importing one service never imports them all.

- dialling: place an outbound call
- actions: speak, DTMF, hang up a live call
- turns: explicit turns (`continue`, `continue.start`/`.result`)
- events: apply a normalized carrier event; answering: what an answered call gets;
  inbound: screening and a new caller's arrival
- webhooks: one carrier webhook end to end; outbox and carrier_commands: REST commands
  owed by applied events
- lifecycle: transitions, finalization, transcript lines, event rows
- speech, stream_plans, streams, stream_commands: speaking and media streams
- auto_reply (when to answer, dispatch), auto_reply_worker (generate and speak), routes,
  sessions: automatic replies and who answers
- timers: the sweep and restart restore; tokens, accounts: API tokens and admin users
"""
