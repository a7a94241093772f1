"""Reliability suite (issue 10): storms, crash injection, dependency faults, bad input, fuzzing, deletion safety."""
