"""dlshared."""
