"""Admin chat commands (#reload, #kb, #stats, #unmatched, #appeals, #room, #appeal): `commands.py`.
They work on an `AdminHost` (the engine is one), never on the engine module itself."""
