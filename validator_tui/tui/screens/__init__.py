"""Screens pushed over the main screen: confirmations, help, job details, ORM queries."""
