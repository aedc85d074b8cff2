"""Tests of regtune.serve."""
