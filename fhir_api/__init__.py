"""The FHIR R4 facade (`/fhir/r4/`): EHRs book, move and cancel appointments, and read them
back, with SMART Backend Services auth (`/fhir/auth/token`). A door like the patient API: it
calls `appointments.services` and `appointments.selectors`; nothing imports it. docs/fhir.md."""
