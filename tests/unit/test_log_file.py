"""The engine's log file: added once, never twice for the same file, filtered, released."""

import logging

from validator_tui.engine.log_file import LOG_NAME, keep_log_file, release_log_file


def test_log_file_gets_engine_info_and_others_warnings(tmp_path):
    handler = keep_log_file(tmp_path)
    assert handler is not None
    try:
        assert keep_log_file(tmp_path) is None  # the file is written already
        logging.getLogger("validator_tui.engine").info("challenge CVM active")
        logging.getLogger("httpx").info("HTTP Request: GET /x")
        logging.getLogger("httpx").warning("pool exhausted")
    finally:
        release_log_file(handler)
    assert handler not in logging.getLogger().handlers
    text = (tmp_path / LOG_NAME).read_text()
    assert "INFO  challenge CVM active" in text
    assert "GET /x" not in text and "WARNING pool exhausted" in text
    release_log_file(None)


def test_log_file_that_cannot_be_opened_is_skipped(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    assert keep_log_file(blocker) is None
