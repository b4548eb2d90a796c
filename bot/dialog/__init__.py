"""Conversations: remedy replies and multi-turn appeal material collection (transport-neutral).

One `Conversation` per (chat, sender); its `state` names the scene that waits for an answer.
`flow.Dialog` composes the scenes' mixins; `registry.py` routes a message by the state to the
scene registered under that name (and a command to its handler). Every sentence the dialog says is a
named text of the responses catalogue (knowledge/responses.yaml); it never parses words itself
(`bot.matching.intents.Reader` reads them).

Scenes (state -> module):

    idle, choice                 idle.py        nothing pending; which of the suggested prompts
    appeal_offer, route          offer.py       shall I help with the appeal? is 线上反馈 shown?
    collecting                   collecting.py  one appeal item (awaiting = the slot name)
    military                     military.py    does 军人证件 apply?
    file_slot                    files.py       which item is the file just sent? (files, OCR)
    switch                       switch.py      a new failure prompt mid-appeal: switch to it?
    confirm                      confirm.py     the summary; 确认 writes the package
    delete_confirm               delete.py      delete everything about me?
    quit_confirm                 quit.py        不整了 mid-appeal: cancel or pause?
    supplement_which, _upload    supplement.py  需补充: which items; 线上反馈 uploaded again?

Open for the rest:

    dispatch.py    the entry point and the order of interpretation every waiting state shares
    rooms.py       group chats (remedies only; appeals are collected in a DM)
    answers.py     FAQ and item answers, human help
    commands.py    取消, 暂停, 继续, 重新开始, 跳过, 进度, 帮助, 详细, 申诉
    timers.py      reminder and expiry
    base.py        what every scene uses (texts, replies, the pending question, labels, records)
    turn.py        `Turn`, `awaiting_of`, small helpers and constants
    registry.py    `Scene`, `SCENES`, `COMMANDS`
    acts.py        several acts in one message; a choice by ordinal; which item to edit
    extract.py     an item's value inside a sentence
    slots.py, validators.py   the items' kinds and checks
    review.py      the materials looked at as a reviewer would (OCR)
    transcript.py  the turn as operators review it (redacted text, replies, reading, misread)
"""
