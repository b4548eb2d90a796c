"""Transports: how messages reach the engine and replies leave it. One per channel; none knows the
dialog, the engine knows none of them.

    wechaty_adapter.py   WeChat through a Wechaty puppet-service gateway: the entry point
                         (`run_wechat`); its parts are the package `wechat/` (client.py is the only
                         module of the bot that imports wechaty)
    console.py           the console chat (one user in a terminal; ticks like `run` while it waits)
    screen.py            the console's terminal: chat lines, log lines and the prompt redrawn
    replay.py            the replay runner (JSONL events in, JSON replies out)
    outbox.py            the rate-limited send queue every transport sends through
"""
