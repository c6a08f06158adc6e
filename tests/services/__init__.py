"""One test module per service module of calls/services/, calling the services directly."""
