"""The dialog: every scene's mixin composed into one `Dialog` (the engine's entry point is
`Dialog.handle`, the timers' `Dialog.on_idle`). Which module holds what: `bot/dialog/__init__.py`."""
from __future__ import annotations

from bot.dialog.answers import Answers
from bot.dialog.base import DialogBase
from bot.dialog.collecting import CollectingScene
from bot.dialog.commands import Commands
from bot.dialog.confirm import ConfirmScene
from bot.dialog.delete import DeleteScene
from bot.dialog.dispatch import Dispatch
from bot.dialog.files import FilesScene
from bot.dialog.idle import IdleScene
from bot.dialog.military import MilitaryScene
from bot.dialog.offer import OfferScene
from bot.dialog.quit import QuitScene
from bot.dialog.rooms import Rooms
from bot.dialog.supplement import SupplementScene
from bot.dialog.switch import SwitchScene
from bot.dialog.timers import Timers
from bot.dialog.turn import Turn, awaiting_of

__all__ = ["Dialog", "Turn", "awaiting_of"]


class Dialog(Dispatch, Rooms, Answers, IdleScene, OfferScene, CollectingScene, MilitaryScene, FilesScene,
             SwitchScene, ConfirmScene, SupplementScene, DeleteScene, QuitScene, Commands, Timers, DialogBase):
    """One dialog per engine: `handle` answers a message, `on_idle` is the timers' turn,
    `delete_user_data` removes everything about a creator."""
