"""Due actions (what must happen when, for each call) and the scheduler that applies them."""
