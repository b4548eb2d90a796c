"""The WeChat transport's parts (the entry point is `bot.transport.wechaty_adapter`):
`client.py` (the gateway client; the only module that imports wechaty), `supervisor.py` (the
connection and its health: `WechatTransport`), `inbound.py` (messages, files, friend requests),
`outbound.py` (sending)."""
