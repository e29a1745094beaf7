"""The join pages: the room a browser joins an appointment's call from, for staff (from the
portal), the patient and their guests (from their links)."""
