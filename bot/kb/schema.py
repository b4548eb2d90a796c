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
                },
            },
        },
    },
}
