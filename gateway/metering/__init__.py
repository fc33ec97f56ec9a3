"""Reservations, settlement and the usage outbox."""
