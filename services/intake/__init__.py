"""Intake: the HTTP front door for other systems; publishes incident.reported."""
