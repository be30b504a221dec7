"""`gateway run|check|status|tail|config|outbox|decode|profiles|scan|sim|test-alert|demo`.

Each subcommand parses its arguments, calls into the core or a driver, prints, and returns an
exit code: 0 fine, 78 a bad config (EX_CONFIG from sysexits.h, the same code `gateway run`
exits with, so systemd's `RestartPreventExitStatus=78` applies to `ExecStartPre=gateway
check` too), 1 another problem found (undecodable input), 2 usage. Drivers add
simulators and scanners by declaring `SIMULATORS` / `SCANNERS` in their package
(`{"nmea": "drivers.serial.sim:nmea_main"}`; the function takes argv and returns an exit code);
`gateway sim --help` / `scan --help` list them. `config`, `decode` and `profiles` live in
their own modules (`gateway.cli.config`, `gateway.cli.decode`, `gateway.cli.profiles`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from gateway import __version__
from gateway.config import loader as config_mod
from gateway.errors import ConfigError


def _plugins(attr: str) -> dict[str, str]:
    from gateway.registry import driver_modules  # every driver package: not for `run`

    found: dict[str, str] = {}
    for module in driver_modules():
        found.update(getattr(module, attr, {}))
    return found


def _call_plugin(spec: str, argv: list[str]) -> int:
    module_name, func = spec.split(":")
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func)
    return int(fn(argv) or 0)


EX_CONFIG = 78  # sysexits.h: configuration error; the daemon exits with it too
LOG_LEVELS = ("debug", "info", "warning", "error")


def _load(path: str) -> config_mod.Config | None:
    """The config, or None after printing every problem (path: message) and a count."""
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return EX_CONFIG
    if not args.skip_files:
        from gateway.config import reach, tls

        # The daemon runs without these (only the uplink stays down), but they are wrong.
        problems = tls.problems(cfg.uplink)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"{args.config}: {len(problems)} problem(s)", file=sys.stderr)
            return EX_CONFIG
        # What the box may still fix by itself (an adapter plugged in, the unit's
        # StateDirectory=): said, but not a reason to refuse the config.
        for warning in reach.warnings(cfg):
            print(f"warning: {warning}", file=sys.stderr)
    if cfg.uplink.enabled and cfg.uplink.transport == "http" and cfg.uplink.commands:
        # Not served over HTTP (the agent would hold them for a poll we do not make).
        print(
            'warning: uplink.commands: platform commands need transport = "mqtt"; over http '
            f"they are not served ({', '.join(cfg.uplink.commands)}); "
            "set commands = [] to say so",
            file=sys.stderr,
        )
    devices = cfg.devices()
    profiles = sorted({d.profile for d in devices if d.profile})
    print(
        f"{args.config}: OK — gateway {cfg.site.id}, {len(cfg.buses)} bus(es), "
        f"{len(devices)} device(s), {len(profiles)} profile(s), "
        f"uplink {cfg.uplink.format} to "
        + (
            cfg.uplink.url
            if cfg.uplink.transport == "http"
            else f"{cfg.uplink.host}:{cfg.uplink.port}"
        )
        + (
            f", {len(cfg.alerts.rules)} alert rule(s), {len(cfg.alerts.actions)} action(s)"
            if cfg.alerts.configured
            else ""
        )
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import daemon

    return daemon.main(args.config, log_level=args.log_level)


def cmd_status(args: argparse.Namespace) -> int:
    from gateway.cli import status as status

    if args.interval <= 0:
        print("gateway status: --interval must be > 0", file=sys.stderr)
        return 2
    return status.main(args.config, as_json=args.json, watch=args.interval if args.watch else None)


def cmd_test_alert(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.alerts.trial import technician_test

    cfg = _load(args.config)
    if cfg is None:
        return EX_CONFIG
    return asyncio.run(technician_test(cfg, args.rule, args.device, args.send, sys.stdout))


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import field as demo

    return demo.main(args)


def cmd_plugin(kind: str, args: argparse.Namespace) -> int:
    table = _plugins("SIMULATORS" if kind == "sim" else "SCANNERS")
    if args.name not in table:
        known = ", ".join(sorted(table)) or "none"
        print(f"gateway {kind}: unknown {args.name!r}; known: {known}", file=sys.stderr)
        return 2
    return _call_plugin(table[args.name], args.rest)


def _plugin_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], kind: str) -> None:
    """`gateway sim NAME ...` / `gateway scan NAME ...`; the help lists the drivers' names."""
    what = "simulator" if kind == "sim" else "scanner"
    names = ", ".join(sorted(_plugins("SIMULATORS" if kind == "sim" else "SCANNERS"))) or "none"
    p = sub.add_parser(
        kind,
        help=f"run a device {what}: {names}",
        description=f"Run a device {what}. Available: {names}. "
        f"`gateway {kind} NAME --help` shows its options.",
    )
    p.add_argument("name", help=f"the {what}: {names}")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=f"the {what}'s own options")
    p.set_defaults(func=lambda a: cmd_plugin(kind, a))


def build_parser(only_run: bool = False) -> argparse.ArgumentParser:
    """The whole command line; `only_run`: just `run`, for the daemon's own start, which then
    imports none of the other subcommands' modules (nor every driver package for `sim` and
    `scan`): less to load, less resident for as long as the daemon runs."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            default=str(config_mod.DEFAULT_PATH),
            help="config TOML file (default: %(default)s)",
        )
        return p

    p = with_config(sub.add_parser("run", help="run the daemon"))
    p.add_argument(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        help=f"least severe event logged: {', '.join(LOG_LEVELS)} (default: info)",
    )
    p.set_defaults(func=cmd_run)
    if only_run:
        return parser
    from gateway.cli import config as config_cli
    from gateway.cli import decode as decode_cli
    from gateway.cli import outbox as outbox_cli
    from gateway.cli import profiles as profiles_cli
    from gateway.cli import tail as tail_cli

    p = with_config(sub.add_parser("check", help="validate a config and its device profiles"))
    p.add_argument(
        "--skip-files",
        action="store_true",
        help="do not read the TLS and password files [uplink] names, nor look at the store "
        "directory and serial ports: a missing one keeps only that part down, so the systemd "
        "unit's ExecStartPre skips them",
    )
    p.set_defaults(func=cmd_check)
    p = with_config(sub.add_parser("status", help="outbox depth, drops and oldest reading"))
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.add_argument("--watch", action="store_true", help="repeat until Ctrl-C")
    p.add_argument(
        "--interval", type=float, default=2.0, help="seconds between --watch reports (default: 2)"
    )
    p.set_defaults(func=cmd_status)
    config_cli.add_parser(sub, str(config_mod.DEFAULT_PATH))
    outbox_cli.add_parser(sub, str(config_mod.DEFAULT_PATH))
    decode_cli.add_parser(sub)
    profiles_cli.add_parser(sub)
    tail_cli.add_parser(sub, str(config_mod.DEFAULT_PATH))
    for kind in ("sim", "scan"):
        _plugin_parser(sub, kind)
    p = with_config(sub.add_parser("test-alert", help="show (and --send) a rule's test alert"))
    p.add_argument("rule", help="an [[alerts.rules]] name")
    p.add_argument(
        "--device", help="the device key to raise it for (default: a device the rule watches)"
    )
    p.add_argument("--send", action="store_true", help="send the e-mail now")
    p.set_defaults(func=cmd_test_alert)
    p = sub.add_parser("demo", help="run the gateway on a simulated field with a local broker")
    p.add_argument("--broker", help="use this broker (host:port) instead of starting mosquitto")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = Ctrl-C)")
    p.add_argument("--workdir", help="keep the demo's files here (default: a temp dir)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only_run=argv[:1] == ["run"]).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
