"""Citizen feedback on vaccination records and the facilities' inbox."""
