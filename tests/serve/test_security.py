"""Access control: token, Host and Origin checks; the serve options that must be refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from helpers.platform import make_service

from t23d.common.errors import ConfigError
from t23d.serve.app import AppConfig, create_app
from t23d.serve.auth import is_loopback_host
from t23d.serve.server import ServeConfig, check_serve_config

TOKEN = "s3cret-token"


@pytest.fixture
def service(tmp_path, tiny_sd_dir):
    return make_service(tmp_path / "data", tiny_sd_dir)


def test_token_is_needed_by_every_request(service):
    app = create_app(service, AppConfig(token=TOKEN))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path in ("/api/health", "/api/jobs", "/api/config", "/docs", "/openapi.json", "/static/app.js"):
            r = client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        page = client.get("/")
        assert page.status_code == 401 and 'name="token"' in page.text  # a form to enter it
        assert client.post("/api/jobs", json={"prompt": "x"}).status_code == 401
        wrong = client.get("/api/health", headers={"Authorization": "Bearer nope-nope"})
        assert wrong.status_code == 401
        ok = client.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        # ?token= opens the page and sets an HttpOnly cookie used by the page's own requests
        opened = client.get(f"/?token={TOKEN}")
        assert opened.status_code == 200 and "HttpOnly" in opened.headers["set-cookie"]
        assert client.get("/api/jobs").status_code == 200  # the cookie now authenticates
        assert client.post("/api/jobs", json={"prompt": "a red ball"}).status_code == 201


def test_non_loopback_host_header_is_refused_on_a_loopback_bind(service):
    with TestClient(create_app(service), base_url="http://127.0.0.1:8023") as client:
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/health", headers={"Host": "localhost:8023"}).status_code == 200
        assert client.get("/api/health", headers={"Host": "[::1]:8023"}).status_code == 200
        r = client.get("/api/health", headers={"Host": "evil.example:8023"})
        assert r.status_code == 421 and "not served here" in r.json()["detail"]


def test_cross_origin_writes_are_refused(service):
    with TestClient(create_app(service), base_url="http://127.0.0.1:8023") as client:
        r = client.post("/api/jobs", json={"prompt": "x"}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
        r = client.post("/api/jobs", json={"prompt": "x"}, headers={"Origin": "http://127.0.0.1:8023"})
        assert r.status_code == 201
        assert client.get("/api/jobs", headers={"Origin": "http://evil.example"}).status_code == 200


def test_is_loopback_host():
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "192.168.1.2", "example.com", "::"))


def test_serve_options_refused(tmp_path):
    with pytest.raises(ConfigError, match="--host 0.0.0.0 is not a loopback address.*needs --token"):
        check_serve_config(ServeConfig(host="0.0.0.0", data_dir=tmp_path))
    with pytest.raises(ConfigError, match="--token must be 8 to 256 characters"):
        check_serve_config(ServeConfig(host="0.0.0.0", token="short", data_dir=tmp_path))
    with pytest.raises(ConfigError, match="--config nope.yaml: no such file"):
        check_serve_config(ServeConfig(config_files=("nope.yaml",), data_dir=tmp_path))
    with pytest.raises(ConfigError, match="--workers must be at least 1, got 0"):
        check_serve_config(ServeConfig(workers=0, data_dir=tmp_path))
    ok = check_serve_config(
        ServeConfig(host="0.0.0.0", token=TOKEN, priors=(str(tmp_path), "org/model"), data_dir=tmp_path)
    )
    assert ok.priors == (str(tmp_path.resolve()), "org/model")


def test_one_service_per_data_folder(service, tmp_path, tiny_sd_dir):
    from t23d.common.errors import T23dError

    service.start()
    try:
        other = make_service(service.config.data_dir, tiny_sd_dir)
        with pytest.raises(T23dError, match="is in use by another t23d service or batch"):
            other.start()
    finally:
        service.stop(timeout_s=10)
    again = make_service(service.config.data_dir, tiny_sd_dir)
    again.start()  # released on stop
    again.stop(timeout_s=10)
