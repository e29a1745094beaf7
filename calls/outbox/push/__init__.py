"""Pushes to devices: ring / notify / missed-call pushes for call events.

- `dispatch.on_event` (a relay consumer) turns an event into `PushDelivery` rows and enqueues
  them in batches (`dispatch.batch_size` rows per `deliver_pushes` task: one per worker
  process, at most PUSH_BATCH_SIZE);
- `delivery.deliver_many` claims a batch's rows, sends them concurrently through their
  providers (kept-alive connections) and records the answers (`deliver`: one row);
- `webpush`, `apns`, `fcm` are the providers, behind the small interface in `base`.
"""
