"""Test infrastructure shared by every app's tests: real processes, real services."""
