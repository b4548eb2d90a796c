from __future__ import annotations

import io
import logging

import pytest

from bot import privacy
from bot.privacy import (
    RedactingFilter,
    install_log_redaction,
    redact,
    safe_path_label,
    setup_logging,
    uninstall_log_redaction,
)

ID = "11010519491231002X"


@pytest.fixture
def clean_logging():
    """Restore the record factory and root handlers/level after a test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    factory = logging.getLogRecordFactory()
    yield
    uninstall_log_redaction()
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logging.setLogRecordFactory(factory)


def _capture(logger_name: str = "test.privacy") -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    return logger, buf, handler


# ------------------------------------------------------------------ redact()

@pytest.mark.parametrize(
    "text,expected",
    [
        (f"身份证{ID}谢谢", "身份证110105********002X谢谢"),
        ("110105 19491231 002x", "110105********002X"),
        ("１１０１０５１９４９１２３１００２Ｘ", "110105********002X"),
        ("110105194912310021", "110105********0021"),  # bad checksum: still masked
        ("手机13812345678。", "手机138****5678。"),
        ("电话 +86 138-1234-5678", "电话 138****5678"),
        ("８６１３８１２３４５６７８", "138****5678"),
        ("138 1234 5678", "138****5678"),
    ],
)
def test_redact_masks(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "订单号 2024123456789012345678",  # longer runs are not IDs/phones
        "12812345678",  # not a mobile prefix
        "版本 10.38.0，提示语 12",
        "https://example.com/a/b.jpg",
        "",
    ],
)
def test_redact_leaves_other_text(text):
    assert redact(text) == text


def test_redact_paths():
    out = redact("saved /tmp/wechaty/abc/IMG_0001.jpg and C:\\Users\\u\\v.mp4 ok")
    assert "wechaty" not in out and "Users" not in out
    assert out == "saved <image> and <video> ok"


def test_safe_path_label():
    assert safe_path_label("/data/x/张三-身份证.JPG") == "<image>"
    assert safe_path_label("clip.mov") == "<video>"
    assert safe_path_label("voice.silk") == "<audio>"
    assert safe_path_label("/tmp/abc") == "<file>"
    assert safe_path_label(None) == "<none>"


# ------------------------------------------------------------------ logging

def test_filter_redacts_args_and_message(clean_logging):
    logger, buf, handler = _capture()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.info("user sent %s and phone %s", ID, "13812345678")
        logger.info(f"inline {ID}")
        logger.info("dict %(n)s", {"n": ID})
    finally:
        logger.removeHandler(handler)
    out = buf.getvalue()
    assert ID not in out and "13812345678" not in out
    assert out.count("110105********002X") == 3
    assert "138****5678" in out


def test_filter_redacts_exceptions(clean_logging):
    logger, buf, handler = _capture()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"bad id {ID}")
        except ValueError:
            logger.exception("failed")
        logger.info("stack", stack_info=True)
    finally:
        logger.removeHandler(handler)
    out = buf.getvalue()
    assert "ValueError: bad id 110105********002X" in out
    assert ID not in out


def test_filter_survives_bad_format(clean_logging):
    logger, buf, handler = _capture()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.info("oops %d %d", ID)  # wrong arg count
    finally:
        logger.removeHandler(handler)
    assert ID not in buf.getvalue()
    assert "110105********002X" in buf.getvalue()


def test_install_covers_handlers_added_later(clean_logging):
    install_log_redaction()
    install_log_redaction()  # idempotent
    # A non-propagating logger with its own handler, added after installation.
    logger, buf, handler = _capture("test.privacy.late")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("id=%s tel=%s", ID, "+8613812345678")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    out = buf.getvalue()
    assert out.strip() == "id=110105********002X tel=138****5678"


def test_install_adds_filter_to_root_handlers(clean_logging):
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    install_log_redaction()
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    install_log_redaction()
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1


def test_setup_logging_to_stderr(clean_logging, capsys):
    h1 = setup_logging("debug")
    h2 = setup_logging("WARNING")
    assert h1 is h2  # not duplicated
    assert logging.getLogger().level == logging.WARNING
    logging.getLogger("bot.test").warning("contact %s file %s", "13812345678", "/tmp/u/a.png")
    err = capsys.readouterr().err
    assert "138****5678" in err and "13812345678" not in err
    assert "<image>" in err and "/tmp/u" not in err


def test_caplog_sees_redacted(clean_logging, caplog):
    install_log_redaction()
    with caplog.at_level(logging.INFO):
        logging.getLogger("bot.x").info("id %s", ID)
    assert ID not in caplog.text
    assert "110105********002X" in caplog.text


def test_uninstall_restores_factory(clean_logging):
    before = logging.getLogRecordFactory()
    install_log_redaction()
    assert logging.getLogRecordFactory() is not before
    uninstall_log_redaction()
    assert logging.getLogRecordFactory() is before
    assert privacy._original_factory is None
