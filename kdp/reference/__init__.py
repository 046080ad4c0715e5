"""Plain, slow, obvious reference implementations that tests check the fast core against."""
