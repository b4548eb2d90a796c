"""JSON schema of a knowledge-base file (knowledge/*.yaml)."""

_text = {"type": "string", "minLength": 1, "pattern": r"\S"}
_words = {"type": "array", "items": _text}
_slot_names = [
    "account_name", "real_name", "id_number", "id_handheld_photo", "id_front_photo",
    "id_back_photo", "error_prompt", "taobao_screenshot", "phone_model", "taobao_version",
    "failure_video", "military_docs", "contact",
]

KB_SCHEMA = {
    "type": "object",
    # A knowledge dir may split the base over several files; what must exist exactly once
    # (appeal routes, a version) is checked after merging, in loader.py.
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "version": _text,
        "source": _text,
        "groups": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["title", "remedy", "appeal"],
                "additionalProperties": False,
                "properties": {
                    "title": _text,
                    "remedy": _text,
                    "appeal": {"type": "boolean"},
                    "notes": _words,
                    # the remedy written for chat: short numbered steps, no cross-references
                    "chat": _text,
                },
            },
        },
        "notes": {"type": "object", "additionalProperties": _text},
        "appeal_routes": {
            "type": "object",
            "required": ["online", "email"],
            "additionalProperties": False,
            "properties": {
                route: {
                    "type": "object",
                    "required": ["title", "how", "materials"],
                    "additionalProperties": False,
                    "properties": {
                        "title": _text,
                        "how": _text,
                        "email_subject": _text,
                        "materials": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["slot", "label"],
                                "additionalProperties": False,
                                "properties": {
                                    "slot": {"enum": _slot_names},
                                    "label": _text,
                                    "optional": {"type": "boolean"},
                                },
                            },
                        },
                    },
                }
                for route in ("online", "email")
            },
        },
        "matching": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "synonyms": {"type": "object", "additionalProperties": _words},
                "context_words": _words,
                "off_topic_words": _words,
                "failure_words": _words,
            },
        },
        # Dialog understanding (knowledge/intents.yaml, knowledge/faq.yaml) and the bot's own
        # words (knowledge/responses.yaml). Which names must exist is checked after merging.
        "commands": {"type": "object", "additionalProperties": {**_words, "minItems": 1}},
        "intents": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["cues"],
                "additionalProperties": False,
                "properties": {"cues": {**_words, "minItems": 1}, "phrasings": _words},
            },
        },
        "items": {
            "type": "object",
            "propertyNames": {"enum": ["route", *_slot_names]},
            "additionalProperties": {
                "type": "object",
                "required": ["label", "aliases", "ask", "why"],
                "additionalProperties": False,
                "properties": {"label": _text, "aliases": {**_words, "minItems": 1}, "ask": _text,
                               "why": _text, "what": _text, "where": _text},
            },
        },
        "faq": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "answer"],
                "anyOf": [{"required": ["phrasings"]}, {"required": ["cues"]}],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                    "phrasings": _words,
                    "cues": _words,
                    "answer": _text,
                    "grounds": _words,  # quotes of the source document the answer relies on
                    "settings": _words,  # settings the answer shows
                    "behaviour": {"type": "boolean"},  # the answer describes the bot's own behaviour
                    "seed_silent": {"type": "boolean"},  # the source does not say: the answer says so
                },
            },
        },
        "responses": {"type": "object", "additionalProperties": _text},
        # Phrasings operators added from the web console (/unmatched, a turn labelled in
        # /conversations): knowledge/learned.yaml.
        "learned": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "prompt_phrasings": {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"},
                                     "additionalProperties": _words},
                "faq_phrasings": {"type": "object", "additionalProperties": _words},
                "intent_phrasings": {"type": "object", "additionalProperties": _words},
                "command_phrasings": {"type": "object", "additionalProperties": _words},
            },
        },
        "prompts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "group", "text"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "group": _text,
                    "text": _text,
                    "wildcard": _text,
                    "phrasings": _words,
                    "keywords": _words,
                    # words of which the message must contain one for this prompt to be proposed
                    # at all (for prompts whose false positive is harmful)
                    "requires": {**_words, "minItems": 1},
                },
            },
        },
    },
}
