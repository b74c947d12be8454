"""Volunteers: roster, shifts, check-in, devices, positions, status and the points ledger."""
