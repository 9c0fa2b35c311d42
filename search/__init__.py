"""How trials are chosen, run and reported."""
