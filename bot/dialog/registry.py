"""Where a message goes: the scenes by state name, and the commands by name.

A scene is one state of a conversation (`Conversation.state`, e.g. "route") registered with the
handlers it owns:

    on_text   async (dialog, turn, text) -> replies   its reading of the expected answer
    on_file   async (dialog, turn) -> replies         a file sent in this state
              (None: the shared handling, `FilesScene._file_read`: a screenshot read for a prompt)
    enter     (dialog, turn, ...) -> replies          brings a conversation into this state and asks
              its question (None: entered as one step of another scene, named in its module)
    on_idle   (dialog, conv, now, writes) -> replies  reminder and expiry while the creator is away
              (None: the shared timers, `timers.py`)

and flags that the shared order of interpretation reads (`dispatch.py`): whether it runs before the
scene at all (`shared_first`), whether an appeal is under way (`in_appeal`: 不整了 asks first, "not
now" says what is kept, a prompt in a screenshot offers a switch, 申诉 resumes), whether its
question is a yes/no (`yes_no`: "可以，材料要准备些啥" answers it and asks something).

`enter` is not called through the registry: other scenes call the entry step directly (it is named
here so that a reader, and tests/test_structure.py, find where each state begins).

Handlers are registered as the functions of the scene's mixin and called as the composed dialog
has them (`bound`: looked up on the instance by name), so a subclass or a patched instance is what
runs. A new state is one module with its mixin and one `register(Scene(...))`, and its mixin
listed in `flow.Dialog`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Scene:
    state: str
    on_text: Callable
    on_file: Callable | None = None
    enter: Callable | None = None
    on_idle: Callable | None = None
    shared_first: bool = True
    in_appeal: bool = False
    yes_no: bool = False


SCENES: dict[str, Scene] = {}
COMMANDS: dict[str, Callable] = {}  # whole-message commands (knowledge/intents.yaml `commands`)


def register(scene: Scene) -> Scene:
    if scene.state in SCENES:
        raise ValueError(f"scene {scene.state!r} is registered twice")
    SCENES[scene.state] = scene
    return scene


def command(name: str):
    """Decorator: the method answers the command `name` in every state (`COMMANDS`)."""
    def add(fn: Callable) -> Callable:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = fn
        return fn
    return add


def scene_of(state: str | None) -> Scene | None:
    return SCENES.get(state or "")


def in_appeal(state: str | None) -> bool:
    """An appeal is under way in this state (something collected or about to be)."""
    scene = scene_of(state)
    return scene is not None and scene.in_appeal


def yes_no(state: str | None) -> bool:
    """This state's question is answered with a yes or a no."""
    scene = scene_of(state)
    return scene is not None and scene.yes_no


def bound(dialog, fn: Callable) -> Callable:
    """The registered handler as this dialog has it (an override or a patch on the instance wins)."""
    return getattr(dialog, fn.__name__)
