"""The clinic's messages to patients and guests: what is said (`texts`), the calendar invite
(`ics`), the SMS provider (`sms`), and the delivery rows that carry each message to one person
on one channel (`delivery`). docs/architecture.md, "Patient messages"."""
