"""Every change to clinics, staff, patients and appointments, a module by concern:

- `staff`: clinics, staff members and their clinics (a staff member's calls teams follow);
- `patients`: patients and their calls users;
- `booking`: book, edit (reschedule) and cancel an appointment, with its call;
- `guests`: a patient's guests (family, a carer) with links of their own;
- `join_links`: the patient's join link: email it, replace it;
- `status`: what moves an appointment after booking (check-in, a cancel request, its call's
  events, the portal's call buttons);
- `sign_in_codes`: the patient API's emailed sign-in codes;
- `call_users`: the calls user behind each staff member and patient;
- `waiting`: the waiting room from the clinic's side (Admit, the lobby message).

An appointment and its call never disagree: booking, rescheduling, changing members and
cancelling change the call through `calls.services` inside the same transaction, so a failure
rolls back both. Errors are `django.core.exceptions.ValidationError` keyed by form field.
"""
