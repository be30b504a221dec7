"""`[uplink] transport = "http"`: what the loader accepts and refuses (each problem names its
key), what `gateway check` warns about, and the HTTP transport's status policy and reasons."""

from __future__ import annotations

import tomllib

import pytest

from gateway.cli.main import main
from gateway.config.loader import parse
from gateway.errors import ConfigError
from gateway.uplink.http import describe, verdict

BASE = '[gateway]\nid = "gw1"\n[uplink]\n'
HTTP = 'transport = "http"\n'


def problems(uplink: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(BASE + uplink)
    return [str(p) for p in exc.value.problems]


def test_mqtt_stays_the_default_and_http_takes_host_and_port_from_the_url():
    assert parse(BASE).uplink.transport == "mqtt"
    up = parse(BASE + HTTP + 'url = "https://iota.city.example:7896"\n').uplink
    assert (up.transport, up.host, up.port) == ("http", "iota.city.example", 7896)
    assert up.url == "https://iota.city.example:7896/iot/json"  # the agent's default path
    assert up.request_timeout == 30.0
    plain = parse(BASE + HTTP + 'url = "http://10.0.0.5/custom/path"\n').uplink
    assert (plain.port, plain.url) == (80, "http://10.0.0.5/custom/path")
    assert parse(BASE + HTTP + 'url = "https://iota.example"\n').uplink.port == 443


@pytest.mark.parametrize(
    ("uplink", "expected"),
    [
        (HTTP, 'uplink.url: required with transport = "http"'),
        (HTTP + 'url = "ftp://iota.example/iot/json"\n', "uplink.url: the scheme must be http"),
        (HTTP + 'url = "https:///iot/json"\n', "uplink.url: it names no host"),
        (HTTP + 'url = "https://iota.example:99999/"\n', "uplink.url: not a usable URL"),
        (HTTP + 'url = "https://u:p@iota.example/"\n', "uplink.url: user:password@"),
        (HTTP + 'url = "https://iota.example/iot/json?k=x"\n', "uplink.url: leave out the query"),
        (HTTP + 'url = "https://iota.example/#x"\n', "uplink.url: leave out the #fragment"),
        (
            HTTP + 'url = "https://iota.example"\nformat = "fiware-ul"\n',
            'uplink.format: transport = "http" needs format = "fiware-json", got "fiware-ul"',
        ),
        (
            HTTP + 'url = "https://iota.example"\nhost = "broker"\n',
            'uplink.host: not used with transport = "http"',
        ),
        (HTTP + 'url = "https://iota.example"\nqos = 0\n', "uplink.qos: not used with"),
        (
            HTTP + 'url = "http://iota.example"\n[uplink.tls]\nca = "/etc/ca.pem"\n',
            "uplink.url: [uplink.tls] is set but it is not https",
        ),
        ('url = "https://iota.example"\n', 'uplink.url: used with transport = "http" only'),
        ("request_timeout = 5\n", 'uplink.request_timeout: used with transport = "http" only'),
        ('transport = "htttp"\n', 'uplink.transport: expected one of mqtt, http; got "htttp"'),
        (HTTP + 'url = "https://x"\nrequest_timeout = 0\n', "uplink.request_timeout: expected"),
    ],
)
def test_http_config_problems_name_the_key(uplink: str, expected: str):
    found = problems(uplink)
    assert any(p.startswith(expected) for p in found), found


def test_check_warns_that_commands_need_mqtt(tmp_path, capsys):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(BASE + HTTP + 'url = "https://iota.example"\n')
    assert main(["check", "-c", str(cfg), "--skip-files"]) == 0
    out = capsys.readouterr()
    assert 'warning: uplink.commands: platform commands need transport = "mqtt"' in out.err
    assert "ping, reload" in out.err
    assert "uplink fiware-json to https://iota.example/iot/json" in out.out
    cfg.write_text(BASE + HTTP + 'url = "https://iota.example"\ncommands = []\n')
    assert main(["check", "-c", str(cfg), "--skip-files"]) == 0
    assert "warning" not in capsys.readouterr().err
    cfg.write_text(BASE)  # MQTT serves commands: nothing to say
    assert main(["check", "-c", str(cfg), "--skip-files"]) == 0
    assert "commands" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (400, "refused"),
        (413, "refused"),
        (415, "refused"),
        (422, "refused"),
        (401, "setup"),
        (403, "setup"),
        (404, "setup"),
        (301, "setup"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_status_policy(status: int, meaning: str):
    assert verdict(status) == meaning


def test_the_platform_reason_is_one_bounded_line():
    agent = (
        b'{"name":"ENTITY_GENERIC_ERROR","message":"Error accesing entity data for device: '
        b'urn:ngsi-ld:Thing:p3 of type: Thing and {\\"timestamp\\":true,\\"x\\":\\"'
        + b"y" * 5000
        + b'\\"}"}'
    )
    assert describe(400, agent) == (
        "HTTP 400 ENTITY_GENERIC_ERROR: Error accesing entity data for device: "
        "urn:ngsi-ld:Thing:p3 of type: Thing and …"
    )
    group = b'{"name":"DEVICE_GROUP_NOT_FOUND","message":"Couldn\\t find device group"}'
    assert describe(404, group) == "HTTP 404 DEVICE_GROUP_NOT_FOUND: Couldn find device group"
    orion = b'{"error":"BadRequest","description":"Invalid characters in attribute value"}'
    assert describe(400, orion) == "HTTP 400 BadRequest: Invalid characters in attribute value"
    html = b"<html>\r\n<body>" + b"x" * 1000 + b"\x00</body></html>"
    line = describe(502, html)
    assert line.startswith("HTTP 502 <html> <body>xxx") and len(line) <= 200
    assert "\n" not in line and "\x00" not in line
    assert describe(503, b"") == "HTTP 503"


def test_an_mqtt_gateway_does_not_load_httpx():
    import subprocess
    import sys

    code = (
        "import sys, gateway.daemon, gateway.runtime, gateway.uplink.session, gateway.cli.main\n"
        "assert 'httpx' not in sys.modules, sorted(m for m in sys.modules if 'http' in m)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_config_prints_an_http_uplink_that_parses_back(tmp_path, capsys):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(BASE + HTTP + 'url = "https://iota.example:7896"\nrequest_timeout = 12\n')
    assert main(["config", "-c", str(cfg)]) == 0
    printed = capsys.readouterr().out
    uplink = tomllib.loads(printed)["uplink"]
    assert "host" not in uplink and uplink["url"] == "https://iota.example:7896/iot/json"
    assert parse(printed).uplink == parse(cfg.read_text()).uplink
