#!/usr/bin/env bash
# Install, upgrade or remove the field sensor gateway on Debian / Raspberry Pi OS (bookworm).
#
#   sudo ./install.sh [--config EXAMPLE|FILE]   install, or upgrade in place
#   sudo ./install.sh --uninstall [--purge]      remove (--purge: config and data too)
#   ./install.sh --root DIR ...  (or DESTDIR=DIR) everything under DIR; touches nothing else
#
# What it writes (docs/technician.md explains each choice):
#   /opt/gateway/releases/<version>-<hash>/{src,venv}  the program: the source and its own venv
#                                                      with the runtime dependencies only
#   /opt/gateway/current -> releases/<id>              switched atomically on an upgrade
#   /opt/gateway/.venv -> current/venv                 the path the unit runs
#   /usr/local/bin/gateway -> /opt/gateway/.venv/bin/gateway
#   /etc/sysusers.d/gateway.conf, user and group `gateway` (in dialout and bluetooth)
#   /etc/systemd/system/gateway.service                replaced on every run
#   /etc/gateway/gateway.toml (0640 root:gateway)      only when absent: never overwritten
#   /etc/udev/rules.d/99-gateway-serial.rules          only when absent: you edit it
#   /var/lib/gateway (0700 gateway:gateway)            the outbox; its files are never touched
# It does nothing else: no broker, no test peers, no service enabled on a first install.
set -euo pipefail
umask 022

SELF_DIR=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
UNIT_NAME=gateway.service
EX_CONFIG=78

usage() {
  cat <<'EOF'
usage: sudo ./install.sh [--config EXAMPLE|FILE] [--root DIR]
       sudo ./install.sh --uninstall [--purge] [--root DIR]

  --config X   the config to start from when /etc/gateway/gateway.toml does not exist yet:
               an example name (production, paddy, buoy, trapline) or a TOML file;
               default: production. An existing config is never overwritten.
  --root DIR   install under DIR (also DESTDIR=DIR): no service, udev or apt action, the
               real system is not touched. The venv's paths point into DIR.
  --uninstall  remove the program, the unit, the sysusers file and the `gateway` command;
               keep /etc/gateway, the udev rules, /var/lib/gateway (the outbox) and the user
  --purge      with --uninstall: remove /etc/gateway, the udev rules and /var/lib/gateway too
EOF
}

say() { printf 'install.sh: %s\n' "$*"; }
die() {
  printf 'install.sh: error: %s\n' "$1" >&2
  exit "${2:-1}"
}

config_arg="" action=install purge=no root=${DESTDIR:-}
while (($#)); do
  case $1 in
    --config) (($# >= 2)) || die "--config needs a value" 2; config_arg=$2; shift 2 ;;
    --config=*) config_arg=${1#*=}; shift ;;
    --root) (($# >= 2)) || die "--root needs a directory" 2; root=$2; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --uninstall) action=uninstall; shift ;;
    --purge) purge=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" 2 ;;
  esac
done
[ "$purge" = no ] || [ "$action" = uninstall ] || die "--purge goes with --uninstall" 2
[ -z "$config_arg" ] || [ "$action" = install ] || die "--config goes with an install" 2

# R is the prefix of every path written; empty for the real system.
R=""
if [ -n "$root" ] && [ "$root" != / ]; then
  [ -d "$root" ] || die "--root $root: no such directory"
  R=$(cd "$root" && pwd)
fi
real() { [ -z "$R" ]; }
if real && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo ./install.sh), or give --root DIR for a scratch install"
fi

OPT=$R/opt/gateway
ETC=$R/etc/gateway
CONFIG=$ETC/gateway.toml
STATE=$R/var/lib/gateway
UNIT=$R/etc/systemd/system/$UNIT_NAME
SYSUSERS=$R/etc/sysusers.d/gateway.conf
UDEV=$R/etc/udev/rules.d/99-gateway-serial.rules
BIN=$R/usr/local/bin/gateway

# systemd and udev are only asked when this is the real system and systemd runs it.
have_systemd() { real && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
service_active() { have_systemd && systemctl is-active --quiet "$UNIT_NAME"; }

# "uid:gid" of the gateway user as the target's own passwd/group files say (numeric, so a
# scratch root's user is used, not the host's).
gateway_ids() {
  local uid gid
  uid=$(awk -F: '$1 == "gateway" { print $3 }' "$R/etc/passwd" 2>/dev/null || true)
  gid=$(awk -F: '$1 == "gateway" { print $3 }' "$R/etc/group" 2>/dev/null || true)
  if [ -z "$uid" ] || [ -z "$gid" ]; then
    die "no user/group gateway in $R/etc/passwd, $R/etc/group"
  fi
  printf '%s:%s\n' "$uid" "$gid"
}

# chown only as root: a user building a scratch root keeps the files as their own.
own() { if [ "$(id -u)" -eq 0 ]; then chown "$@"; fi; }

lock() {
  mkdir -p "$OPT"
  exec 9>"$OPT/.install.lock"
  flock -n 9 || die "another install.sh is running (lock $OPT/.install.lock)"
}

# ---------------------------------------------------------------------------------------------
uninstall() {
  if have_systemd && [ -f "$UNIT" ]; then
    say "stopping and disabling $UNIT_NAME"
    systemctl disable --now "$UNIT_NAME" || true
  fi
  rm -f "$UNIT" "$SYSUSERS"
  if [ -L "$BIN" ]; then rm -f "$BIN"; fi
  rm -rf "$OPT"
  say "removed the program ($OPT), the unit, the sysusers file and $BIN"
  if [ "$purge" = yes ]; then
    rm -rf "$ETC" "$STATE"
    rm -f "$UDEV"
    say "purged $ETC, $STATE (the outbox) and $UDEV"
  else
    say "kept $ETC, $UDEV and $STATE (the outbox); --uninstall --purge removes them"
  fi
  say "kept the user gateway (files may still carry its uid); remove it with: userdel${R:+ --root $R} gateway"
  if have_systemd; then
    systemctl daemon-reload
    if [ "$purge" = yes ]; then udevadm control --reload || true; fi
  fi
}

# ---------------------------------------------------------------------------------------------
# The files the program is made of, relative to the checkout. Tests, benchmarks, CI scripts and
# the development venv stay behind.
SOURCES=(pyproject.toml README.md gateway drivers firmware-configs examples systemd docs)

runtime_packages() {
  # Debian packages the program itself needs: python3 with venv/ensurepip, the CA bundle
  # the examples' [uplink.tls] names, and a font with Japanese glyphs for the digest's
  # charts. Nothing else (no broker, no test peers, no browser).
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "$PYTHON is missing or older than 3.11 (Debian bookworm's python3 is 3.11)"
  local missing=()
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if real && [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then missing+=(ca-certificates); fi
  if real && ! dpkg-query -W -f='${Status}' fonts-ipaexfont-gothic 2>/dev/null | grep -q "ok installed"; then
    missing+=(fonts-ipaexfont-gothic)
  fi
  ((${#missing[@]})) || return 0
  real || die "missing on this machine: ${missing[*]} (apt-get install ${missing[*]})"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The release id: the version and a hash of the source, so running the installer again on the
# same source reuses its release (no rebuild) and a changed source builds a new one.
release_id() {
  local version hash
  version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$SELF_DIR/pyproject.toml" | head -1)
  hash=$(cd "$SELF_DIR" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --exclude=__pycache__ --exclude='*.pyc' -cf - "${SOURCES[@]}" | sha256sum | cut -c1-12)
  printf '%s-%s\n' "${version:-0}" "$hash"
}

build_release() { # $1: release dir: the source and a venv with the project installed
  local rel=$1
  say "building $rel (a venv with the runtime dependencies from PyPI; piwheels on Raspberry Pi OS)"
  rm -rf "$rel"
  mkdir -p "$rel/src"
  (cd "$SELF_DIR" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - "${SOURCES[@]}") |
    tar -xf - -C "$rel/src" --no-same-owner
  # Built where it will run (a venv is not relocatable); `.complete` marks a finished build.
  # The project is installed editable: its built-in device profiles (firmware-configs/) are
  # found beside the package source, and a wheel would not carry them.
  if ! { "$PYTHON" -m venv "$rel/venv" &&
    "$rel/venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
      -e "$rel/src"; }; then
    rm -rf "$rel"
    die "building the venv failed (network? see pip's message above); nothing was changed"
  fi
  # The service cannot write beside its code (User=gateway, ProtectSystem=strict): compiled
  # here, its modules are not compiled again at every start (a third of its start-up time).
  "$rel/venv/bin/python" -m compileall -q "$rel/src/gateway" "$rel/src/drivers" >/dev/null ||
    say "warning: could not compile the modules; the daemon compiles them at every start"
  if ! "$rel/venv/bin/gateway" --version >/dev/null; then
    rm -rf "$rel"
    die "the new build does not run (gateway --version); nothing was changed"
  fi
  touch "$rel/.complete"
}

# The example a new config starts from: a name under examples/ or a file.
example_file() {
  local want=${config_arg:-production}
  if [ -f "$want" ]; then
    printf '%s\n' "$want"
  elif [ -f "$SELF_DIR/examples/$want.toml" ]; then
    printf '%s\n' "$SELF_DIR/examples/$want.toml"
  else
    local names
    names=$(cd "$SELF_DIR/examples" && for f in *.toml; do printf ' %s' "${f%.toml}"; done)
    die "--config $want: neither a file nor one of the examples:$names" 2
  fi
}

# Where a config keeps its outbox and status file. The unit lets the daemon write only under
# /var/lib/gateway (ProtectSystem=strict, ReadWritePaths=) and /run/gateway (RuntimeDirectory=),
# and its /tmp is private (PrivateTmp=yes): an outbox there is lost at every stop.
placement_problems() { # $1: a python with tomllib, $2: config file
  "$1" - "$2" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    store = tomllib.load(f).get("store", {})
path = store.get("path", "/var/lib/gateway/outbox.sqlite")
runtime = store.get("runtime_dir", "/run/gateway")
if not path.startswith("/var/lib/gateway/"):
    print(f"store.path = {path!r}: the unit lets the daemon write only under /var/lib/gateway"
          " (and its /tmp is private: an outbox there is lost at every stop)")
if runtime.rstrip("/") != "/run/gateway":
    print(f"store.runtime_dir = {runtime!r}: the unit provides /run/gateway (RuntimeDirectory=)")
PY
}

# Decide the config before anything outside the release is touched: an existing one is kept
# and must pass the new program's check; a new one comes from an example that must pass too.
# Sets NEW_CONFIG to the example to install, or "" when the existing file stays.
choose_config() { # $1: release dir
  local gw=$1/venv/bin/gateway py=$1/venv/bin/python problems
  NEW_CONFIG=""
  if [ -f "$CONFIG" ]; then
    if ! "$gw" check --skip-files -c "$CONFIG" >/dev/null; then
      abandon "$1"
      die "this version refuses $CONFIG (problems above); nothing was changed: fix it and run again" $EX_CONFIG
    fi
    problems=$(placement_problems "$py" "$CONFIG")
    [ -z "$problems" ] || printf 'install.sh: warning: %s: %s\n' "$CONFIG" "$problems" >&2
    [ -z "$config_arg" ] || say "kept $CONFIG (never overwritten): --config $config_arg not used"
    return 0
  fi
  NEW_CONFIG=$(example_file)
  if ! "$gw" check --skip-files -c "$NEW_CONFIG" >/dev/null; then
    abandon "$1"
    die "$NEW_CONFIG does not pass gateway check (problems above)" $EX_CONFIG
  fi
  problems=$(placement_problems "$py" "$NEW_CONFIG")
  if [ -n "$problems" ]; then
    abandon "$1"
    die "$NEW_CONFIG: $problems" $EX_CONFIG
  fi
}

# A release built by this run and refused is removed; one that already served stays.
abandon() { if [ "$BUILT" = yes ]; then rm -rf "$1"; fi; }

install_system_files() { # $1: release dir; the user, the unit, udev rules, the state directory
  local src=$1/src ids
  install -D -m 0644 "$src/systemd/gateway.sysusers" "$SYSUSERS"
  if real; then
    systemd-sysusers "$SYSUSERS"
  elif [ "$(id -u)" -eq 0 ]; then
    systemd-sysusers --root="$R" "$SYSUSERS"
  else
    # A scratch root of one's own: sysusers gives its files to root, which a user may do only
    # as the root of a user namespace (the root's files must then be the user's own).
    unshare --map-root-user systemd-sysusers --root="$R" "$SYSUSERS" ||
      die "systemd-sysusers --root $R failed (as a user it needs user namespaces: unshare -r)"
  fi
  ids=$(gateway_ids)
  GW_UID=${ids%%:*} GW_GID=${ids##*:}

  install -D -m 0644 "$src/systemd/gateway.service" "$UNIT"
  UDEV_NEW=no
  if [ ! -f "$UDEV" ]; then
    install -D -m 0644 "$src/systemd/99-gateway-serial.rules" "$UDEV"
    UDEV_NEW=yes
  fi
  # The outbox's directory: created once; an existing one keeps its files.
  mkdir -p "$STATE"
  chmod 0700 "$STATE"
  own "$GW_UID:$GW_GID" "$STATE"
}

write_config() {
  [ -n "$NEW_CONFIG" ] || return 0
  mkdir -p "$ETC"
  install -m 0640 "$NEW_CONFIG" "$CONFIG.new"
  own "0:$GW_GID" "$CONFIG.new"
  mv "$CONFIG.new" "$CONFIG"
  say "wrote $CONFIG from $(basename "$NEW_CONFIG"): edit every '# EDIT' line, then: gateway check"
}

switch_to() { # $1: release id; `current` (and so the stable paths) point at it atomically
  ln -sfn "releases/$1" "$OPT/current.new"
  mv -Tf "$OPT/current.new" "$OPT/current"
  [ -L "$OPT/.venv" ] || ln -s current/venv "$OPT/.venv"
  mkdir -p "$(dirname "$BIN")"
  ln -sfn ../../../opt/gateway/.venv/bin/gateway "$BIN"
}

prune() { # keep the current release and the one it replaced (the way back)
  local d
  for d in "$OPT"/releases/*; do
    [ -e "$d" ] || continue
    case $(basename "$d") in "$1" | "$2") ;; *) rm -rf "$d" ;; esac
  done
}

install_all() {
  if [ -d "$OPT/.venv" ] && [ ! -L "$OPT/.venv" ]; then
    die "$OPT holds an install made by hand (a clone with its own .venv): stop the service and move it away first (mv $OPT $OPT.old); the config and the outbox live elsewhere and stay"
  fi
  if [ -n "$config_arg" ]; then example_file >/dev/null; fi # a wrong name fails before any work
  runtime_packages
  lock
  local id rel previous=""
  id=$(release_id)
  rel=$OPT/releases/$id
  if [ -L "$OPT/current" ]; then previous=$(basename "$(readlink "$OPT/current")"); fi
  BUILT=no
  if [ -f "$rel/.complete" ]; then
    say "release $id is already built: reusing it"
  else
    build_release "$rel"
    BUILT=yes
  fi
  choose_config "$rel"
  install_system_files "$rel"
  write_config
  switch_to "$id"
  prune "$id" "$previous"
  say "installed $("$rel/venv/bin/gateway" --version 2>&1) as release $id"

  if ! real; then
    say "scratch root $R: no service, udev or apt action was taken"
    return 0
  fi
  if [ "$UDEV_NEW" = yes ] && command -v udevadm >/dev/null; then
    if udevadm control --reload 2>/dev/null; then
      udevadm trigger --subsystem-match=tty || true
    else
      say "udev is not running here: the rules apply when it is"
    fi
  fi
  if ! have_systemd; then
    say "systemd is not running here: nothing was started"
    return 0
  fi
  systemctl daemon-reload
  if service_active; then
    say "restarting $UNIT_NAME on release $id"
    if ! systemctl restart "$UNIT_NAME"; then
      if [ -n "$previous" ] && [ "$previous" != "$id" ]; then
        switch_to "$previous"
        systemctl restart "$UNIT_NAME" || true
        die "$UNIT_NAME did not start on release $id: back on $previous (journalctl -u gateway)"
      fi
      die "$UNIT_NAME did not start (journalctl -u gateway)"
    fi
  elif [ -z "$previous" ]; then
    cat <<EOF
install.sh: next steps (README "Installing on a box"):
  1. edit $CONFIG   (every '# EDIT' line: gateway id, broker, your devices)
  2. edit $UDEV   (your adapters; gateway scan serial)
  3. gateway check        (exit 0; warnings name what is not plugged in yet)
  4. systemctl enable --now gateway
  5. gateway status
EOF
  else
    say "$UNIT_NAME is not running; left so (systemctl start gateway)"
  fi
}

case $action in
  install) install_all ;;
  uninstall) uninstall ;;
esac
