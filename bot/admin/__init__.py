"""Admin chat commands (#reload, #kb, #stats, #unmatched, #appeals, #room)."""
