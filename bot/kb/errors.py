"""The one error a knowledge base can raise: it names the file, the line and the reason."""
from __future__ import annotations

from pathlib import Path


class KnowledgeError(Exception):
    def __init__(self, file: Path | str, line: int | None, reason: str):
        self.file, self.line, self.reason = str(file), line, reason
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {reason}")
