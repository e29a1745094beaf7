"""The audit trail: an append-only, hash-chained log of who viewed or changed patient data,
who signed in, and what was exported or erased. `audit.record.record` is its only writer; the
trail holds ids and field names, never patient data. It imports nothing of ours."""
