"""Dispatch: the brain. Owns incidents, orders and assignments; decides who goes."""
