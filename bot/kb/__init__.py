"""The knowledge base: the failure prompts, their remedies and appeal routes, intents, FAQ and the
bot's own words, loaded from knowledge/*.yaml (all or nothing) and swapped whole on reload.

    loader.py      load, validate and merge the files (`load_knowledge`, `KnowledgeBase`)
    schema.py      the JSON schema of a file
    responses.py   the responses catalogue: the texts the code asks for, checked at load
    learned.py     phrasings taught from the web console (knowledge/learned.yaml)
    errors.py      `KnowledgeError` (file, line, reason)
"""
from bot.kb.loader import KnowledgeBase, KnowledgeError, Prompt, Group, Material, load_knowledge

__all__ = ["KnowledgeBase", "KnowledgeError", "Prompt", "Group", "Material", "load_knowledge"]
