"""Transports: console, replay, WeChat (wechaty). Only wechaty_adapter.py imports wechaty."""
