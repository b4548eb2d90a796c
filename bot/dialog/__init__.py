"""Conversations: remedy replies and multi-turn appeal material collection."""
