"""Roster and zones: who the volunteers are, where they serve, and where the network has holes."""
