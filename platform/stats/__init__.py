"""Verification statistics: the invalid-people list, its counts and its Excel export."""
