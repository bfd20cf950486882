"""Corrections of records: new versions, history, superseded signatures and passports."""
