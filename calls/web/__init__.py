"""HTTP that carriers and probes call: the webhook gate and views, health and readiness."""
