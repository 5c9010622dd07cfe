"""resnas: search and prune residual networks."""
