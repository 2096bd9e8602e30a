"""Coverage-guided fuzzing of every parser that faces untrusted bytes (see harnesses.py)."""
