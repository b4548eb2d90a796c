from bot.store.sqlite import Conversation, KeyMismatch, Store, Writes

__all__ = ["Store", "Conversation", "Writes", "KeyMismatch"]
