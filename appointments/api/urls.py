"""Patient API routes (filled in by the patient API work)."""

urlpatterns: list = []
