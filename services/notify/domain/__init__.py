"""Notify's decisions: what a team may see of an order, how responses move it, which frames are valid."""
