"""`make serve-reports`: the built site over HTTP, its request log switched by the environment (read once)."""

from __future__ import annotations

import threading

import httpx

from orchestration.environment import environment_from
from reports import serve


def served(site_dir, log_requests: bool) -> int:
    httpd = serve.server(site_dir, port=0, log_requests=log_requests)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        return httpx.get(f"http://127.0.0.1:{httpd.server_address[1]}/index.html", timeout=10).status_code
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_requests_are_logged_only_when_the_environment_says_so(tmp_path, capfd):
    (tmp_path / "index.html").write_text("<h1>Reports</h1>")
    assert not environment_from({"PLATFORM_DATA_DIR": str(tmp_path)}).reports_request_log
    assert served(tmp_path, log_requests=False) == 200
    assert "GET /index.html" not in capfd.readouterr().err
    env = environment_from({"PLATFORM_DATA_DIR": str(tmp_path), "REPORTS_SERVE_LOG": "1"})
    assert served(tmp_path, log_requests=env.reports_request_log) == 200
    assert "GET /index.html" in capfd.readouterr().err
