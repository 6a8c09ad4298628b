"""Notifications to users: the WebSocket manager and the channels to come."""
