"""`make bench`: side-by-side measurements, printed as ratios (no timing asserts anywhere)."""
