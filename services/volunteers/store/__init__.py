"""Volunteers' Redis keys (prefix `roster:`), behind named functions."""
