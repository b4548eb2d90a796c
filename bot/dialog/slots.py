"""The appeal items we collect: how to ask for each, and how to check the answer.

The list and order of items per route come from the knowledge base (appeal_routes), and so do
the words: how each item is asked, why it is needed, where to find it (knowledge/faq.yaml, items).
This module only knows each item's kind and how it is validated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bot.dialog import validators as v


@dataclass(frozen=True)
class SlotSpec:
    name: str
    kind: str  # text | image | video
    validate: Callable[[str], v.Validation] | None = None  # text slots
    sensitive: bool = False  # never echoed in full


SLOTS: dict[str, SlotSpec] = {s.name: s for s in [
    SlotSpec("account_name", "text", v.validate_account_name),
    SlotSpec("real_name", "text", v.validate_real_name, sensitive=True),
    SlotSpec("id_number", "text", v.validate_id_number, sensitive=True),
    SlotSpec("id_handheld_photo", "image"),
    SlotSpec("id_front_photo", "image"),
    SlotSpec("id_back_photo", "image"),
    SlotSpec("error_prompt", "text"),
    SlotSpec("taobao_screenshot", "image"),
    SlotSpec("phone_model", "text", v.validate_phone_model),
    SlotSpec("taobao_version", "text", v.validate_taobao_version),
    SlotSpec("failure_video", "video"),
    SlotSpec("military_docs", "image"),
    SlotSpec("contact", "text", v.validate_contact),
]}

# The optional military item is preceded by a yes/no question instead of being asked directly.
MILITARY_SLOT = "military_docs"
NOT_APPLICABLE = "未涉及"
