"""The outbox: every committed call event (events), handed by the relay to its consumers
(WebSocket groups, webhooks, pushes) through Celery tasks. See docs/architecture.md."""
