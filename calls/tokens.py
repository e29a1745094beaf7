"""What the calls-API tokens mean in time, shared by the code that mints them (calls.api.auth)
and the services that revoke them."""

from __future__ import annotations

from datetime import UTC, datetime

# Minted tokens say they were issued a little earlier than they were (clocks differ).
IAT_BACKDATE_S = 5


def revocation_point(minted_until: float) -> datetime:
    """A `revoke_tokens_issued_before` that revokes every token minted up to `minted_until`
    (its whole second: `iat` is in whole seconds) and none minted from the next second on."""
    return datetime.fromtimestamp(int(minted_until) - IAT_BACKDATE_S + 1, tz=UTC)
