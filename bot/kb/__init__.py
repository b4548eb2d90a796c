from bot.kb.loader import KnowledgeBase, KnowledgeError, Prompt, Group, Material, load_knowledge

__all__ = ["KnowledgeBase", "KnowledgeError", "Prompt", "Group", "Material", "load_knowledge"]
