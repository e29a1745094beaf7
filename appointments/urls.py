"""Staff portal routes (filled in by the portal work)."""

urlpatterns: list = []
