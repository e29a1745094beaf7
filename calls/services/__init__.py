"""Every change of call state, by concern: users, app, devices, call_types, calls, ringing,
moderation, live, sessions. Each service runs in one transaction, locks what it changes, and
writes its outbox event (calls.outbox.events) and due actions (calls.scheduling.due) in that
same transaction. Callers import the module they need (`from calls.services import live`)."""
