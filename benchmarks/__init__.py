"""Side-by-side benchmarks of regtune against its peers (``make bench``)."""
