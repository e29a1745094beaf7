"""Pushes to devices: ring / notify / missed-call pushes for call events.

- `dispatch.on_event` (a relay consumer) turns an event into `PushDelivery` rows and enqueues
  one delivery task per row;
- `delivery.deliver` claims a row, sends it through its provider and records the answer;
- `webpush`, `apns`, `fcm` are the providers, behind the small interface in `base`.
"""
