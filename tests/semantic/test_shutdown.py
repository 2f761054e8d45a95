"""The servers stop on SIGTERM, as process managers stop them, even when whatever started them
ignored the signal (an ignored signal is inherited: a test runner or a shell's background job)."""

from __future__ import annotations

import contextlib
import os

import pytest

from tests.semantic.conftest import free_port, start_server


@pytest.mark.parametrize("module", ["semantic.server", "semantic.pgwire"])
def test_a_server_started_with_sigterm_ignored_still_stops_on_it(published, tmp_path, module):
    # the SQL endpoint with its HTTP port too: uvicorn's own signal handling runs there as well
    extra_env = {"SEMANTIC_SQL_METRICS_PORT": str(free_port())} if module == "semantic.pgwire" else {}
    with contextlib.contextmanager(start_server)(published, tmp_path / "server.log", module=module,
                                                 extra_env=extra_env, sigterm_ignored=True) as server:
        pid = server.pid
    # start_server's teardown sent SIGTERM and waited (it fails if the server did not stop in 30 s)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
