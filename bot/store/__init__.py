from bot.store.sqlite import Conversation, Store

__all__ = ["Store", "Conversation"]
