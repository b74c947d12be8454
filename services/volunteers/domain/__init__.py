"""Volunteers' decisions: plain functions over pydantic values; no FastStream, Redis or httpx."""
