#!/usr/bin/env bash
# Installs (or, with --uninstall, removes) guidond, the guidon CLI and their systemd integration.
#
#   sudo systemd/install.sh                  build release binaries, install, enable guidon.socket and guidon-admin.socket
#   sudo systemd/install.sh --ofrep          … and guidon-ofrep.socket (OFREP on 127.0.0.1:8016)
#   sudo systemd/install.sh --uninstall      stop, disable and remove everything but /etc/guidon
#   sudo systemd/install.sh --uninstall --purge-config    … and /etc/guidon too
#
# Options:
#   --prefix DIR       installation prefix (default /usr/local): DIR/bin, DIR/lib/systemd/system, …
#   --destdir DIR      stage everything under DIR (also: DESTDIR=DIR); nothing is started or created
#                      outside DIR (no sysusers, tmpfiles, daemon-reload or enable)
#   --binaries DIR     take guidond and guidon from DIR instead of building them
#   --notify-reload    install the Type=notify-reload drop-in (default: when systemd >= 253)
#   --no-notify-reload never install it
#   --no-enable        install, but do not enable or start guidon.socket
#   --metrics          also enable guidon-metrics.socket: /metrics and /healthz on 127.0.0.1:9464
#   --ofrep            also enable guidon-ofrep.socket: OFREP on 127.0.0.1:8016
#                      (both units are always installed; enable them later with systemctl)
#   --entitlements     also serve /etc/guidon/entitlements.json (the drop-in entitlements.conf;
#                      the bundled example is installed there when there is none)
#   --uninstall        remove what an install put in place; the config stays unless --purge-config
#   --purge-config     with --uninstall: also delete /etc/guidon (the operator's flags!)
set -euo pipefail

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

repo=$(cd "$(dirname "$0")/.." && pwd -P)
prefix=/usr/local
destdir=${DESTDIR:-}
binaries=""
notify_reload=auto
enable=yes
action=install
purge_config=no
created_config=no
http_sockets=()
entitlements=no
created_entitlements=no

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --binaries) binaries=${2:?--binaries needs a directory}; shift 2 ;;
        --binaries=*) binaries=${1#*=}; shift ;;
        --notify-reload) notify_reload=yes; shift ;;
        --no-notify-reload) notify_reload=no; shift ;;
        --no-enable) enable=no; shift ;;
        --metrics) http_sockets+=(guidon-metrics.socket); shift ;;
        --ofrep) http_sockets+=(guidon-ofrep.socket); shift ;;
        --entitlements) entitlements=yes; shift ;;
        --uninstall) action=uninstall; shift ;;
        --purge-config) purge_config=yes; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
case "$prefix" in /*) ;; *) die "--prefix must be absolute, got $prefix" ;; esac
[ "$purge_config" = no ] || [ "$action" = uninstall ] || die "--purge-config only goes with --uninstall"
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd -P)
    [ "$destdir" != / ] || destdir=""
fi
live=$([ -z "$destdir" ] && echo yes || echo no)
[ "$live" = no ] || [ "$(id -u)" -eq 0 ] || die "installing into / needs root (or use --destdir)"

# systemd only looks for units, sysusers.d and tmpfiles.d under /usr, /usr/local and /etc.
bindir=$prefix/bin
case "$prefix" in
    /usr | /usr/local) libdir=$prefix/lib ;;
    *) libdir="" ;;
esac
unitdir=${libdir:+$libdir/systemd/system}; unitdir=${unitdir:-/etc/systemd/system}
sysusersdir=${libdir:+$libdir/sysusers.d}; sysusersdir=${sysusersdir:-/etc/sysusers.d}
tmpfilesdir=${libdir:+$libdir/tmpfiles.d}; tmpfilesdir=${tmpfilesdir:-/etc/tmpfiles.d}
docdir=$prefix/share/doc/guidon
confdir=/etc/guidon
dropindir=/etc/systemd/system/guidon.service.d

systemd_version() { systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 + 0 }'; }

install_file() { # MODE SOURCE TARGET (TARGET without DESTDIR)
    install -D -m "$1" "$2" "$destdir$3"
    say "installed $destdir$3"
}

# The units name /usr/local/bin/guidond; other prefixes get their own path written in.
install_unit() { # SOURCE TARGET
    local tmp
    tmp=$(mktemp)
    sed -e "s|/usr/local/bin/|$bindir/|g" -e "s|/usr/local/share/doc/guidon/|$docdir/|g" "$1" >"$tmp"
    install_file 0644 "$tmp" "$2"
    rm -f "$tmp"
}

build() {
    if [ -n "$binaries" ]; then
        [ -x "$binaries/guidond" ] && [ -x "$binaries/guidon" ] || die "no guidond/guidon in $binaries"
        return
    fi
    command -v swift >/dev/null || die "swift not found; install the toolchain or pass --binaries DIR"
    say "building release binaries (swift build -c release --static-swift-stdlib)"
    (cd "$repo" && swift build -c release --static-swift-stdlib --product guidond \
        && swift build -c release --static-swift-stdlib --product guidon)
    binaries=$(cd "$repo" && swift build -c release --show-bin-path)
}

install_config() {
    local target=$destdir$confdir/flags.json example=$repo/protocol/examples/flags.json
    mkdir -p "$destdir$confdir"
    if [ -e "$target" ]; then
        say "kept the existing $target"
        return
    fi
    if [ -f "$example" ]; then
        install -m 0640 "$example" "$target"
    else
        say "no $example in this checkout; writing a one-flag starter config"
        (umask 027 && cat >"$target" <<'JSON'
{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "guidon-installed": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "on"
    }
  }
}
JSON
        )
    fi
    created_config=yes
    say "installed $target"
}

install_entitlements() {
    local target=$destdir$confdir/entitlements.json example=$repo/protocol/examples/entitlements.json
    install_unit "$repo/systemd/drop-ins/entitlements.conf" "$dropindir/entitlements.conf"
    if [ -e "$target" ]; then
        say "kept the existing $target"
        return
    fi
    [ -f "$example" ] || die "no $example in this checkout; put an entitlements file at $confdir/entitlements.json"
    install -m 0640 "$example" "$target"
    created_entitlements=yes
    say "installed $target (the example: edit it, or replace it with your own)"
}

do_install() {
    build
    local version
    version=$(systemd_version)
    if [ "$notify_reload" = auto ]; then
        if [ "${version:-0}" -ge 253 ]; then notify_reload=yes; else notify_reload=no; fi
    fi

    install_file 0755 "$binaries/guidond" "$bindir/guidond"
    install_file 0755 "$binaries/guidon" "$bindir/guidon"
    install_unit "$repo/systemd/guidon.socket" "$unitdir/guidon.socket"
    install_unit "$repo/systemd/guidon-admin.socket" "$unitdir/guidon-admin.socket"
    install_unit "$repo/systemd/guidon-metrics.socket" "$unitdir/guidon-metrics.socket"
    install_unit "$repo/systemd/guidon-ofrep.socket" "$unitdir/guidon-ofrep.socket"
    install_unit "$repo/systemd/guidon.service" "$unitdir/guidon.service"
    if [ "$notify_reload" = yes ]; then
        install_file 0644 "$repo/systemd/drop-ins/notify-reload.conf" "$dropindir/notify-reload.conf"
    fi
    install_file 0644 "$repo/systemd/sysusers.d/guidon.conf" "$sysusersdir/guidon.conf"
    install_file 0644 "$repo/systemd/tmpfiles.d/guidon.conf" "$tmpfilesdir/guidon.conf"
    install_file 0644 "$repo/README.md" "$docdir/README.md"
    install_file 0644 "$repo/systemd/README.md" "$docdir/systemd.md"
    install_config
    if [ "$entitlements" = yes ]; then install_entitlements; fi

    if [ "$live" = no ]; then
        say "staged under $destdir; on the target run: systemd-sysusers; systemd-tmpfiles --create;"
        say "  chgrp guidon $confdir $confdir/flags.json; chmod 2770 $confdir;"
        say "  systemctl daemon-reload; systemctl enable --now guidon.socket guidon-admin.socket ${http_sockets[*]}"
        return
    fi
    systemd-sysusers "$sysusersdir/guidon.conf"
    # The daemon reads its config as the guidon group; an existing file is the operator's business.
    if [ "$created_config" = yes ]; then chgrp guidon "$confdir/flags.json"; fi
    if [ "$created_entitlements" = yes ]; then chgrp guidon "$confdir/entitlements.json"; fi
    # The admin writer replaces flags.json by renaming a new file over it: the directory must be
    # writable for the daemon's group (setgid, so that new files stay in the group).
    chgrp guidon "$confdir"
    chmod 2770 "$confdir"
    systemd-tmpfiles --create "$tmpfilesdir/guidon.conf"
    systemctl daemon-reload
    if [ "$enable" = yes ]; then
        systemctl enable --now guidon.socket guidon-admin.socket "${http_sockets[@]}"
        # An upgrade: a running daemon picks up the new binary (and the sockets just enabled: a
        # service receives its sockets when it starts).
        systemctl try-restart guidon.service
        say "guidon.socket is listening on /run/guidon/guidon.sock (group guidon may query it)"
        say "guidon-admin.socket is listening on /run/guidon/admin.sock (group guidon-admin may change flags)"
        for unit in "${http_sockets[@]}"; do
            case "$unit" in
                guidon-metrics.socket) say "guidon-metrics.socket is listening on http://127.0.0.1:9464 (/metrics, /healthz)" ;;
                guidon-ofrep.socket) say "guidon-ofrep.socket is listening on http://127.0.0.1:8016 (OFREP)" ;;
            esac
        done
    fi
}

remove() { # TARGET (without DESTDIR)
    if [ -e "$destdir$1" ] || [ -L "$destdir$1" ]; then
        rm -f "$destdir$1"
        say "removed $destdir$1"
    fi
}

do_uninstall() {
    if [ "$live" = yes ]; then
        systemctl disable --now guidon.socket guidon-admin.socket guidon-metrics.socket guidon-ofrep.socket guidon.service 2>/dev/null || true
    fi
    remove "$bindir/guidond"
    remove "$bindir/guidon"
    remove "$unitdir/guidon.socket"
    remove "$unitdir/guidon-admin.socket"
    remove "$unitdir/guidon-metrics.socket"
    remove "$unitdir/guidon-ofrep.socket"
    remove "$unitdir/guidon.service"
    remove "$dropindir/notify-reload.conf"
    remove "$dropindir/entitlements.conf"
    rmdir "$destdir$dropindir" 2>/dev/null || true
    remove "$sysusersdir/guidon.conf"
    remove "$tmpfilesdir/guidon.conf"
    remove "$docdir/README.md"
    remove "$docdir/systemd.md"
    rmdir "$destdir$docdir" 2>/dev/null || true
    if [ "$live" = yes ]; then
        rmdir /run/guidon 2>/dev/null || true
        systemctl daemon-reload
    fi
    if [ "$purge_config" = yes ]; then
        rm -rf "$destdir$confdir"
        say "removed $destdir$confdir"
    elif [ -d "$destdir$confdir" ]; then
        say "kept $destdir$confdir (delete it with --uninstall --purge-config)"
    fi
    if [ -d "$destdir/var/lib/guidon" ]; then say "kept $destdir/var/lib/guidon (the audit log of flag changes)"; fi
    # Like distribution packages, leave the guidon user and groups: files may still belong to them.
    say "the guidon user and the guidon and guidon-admin groups are left in place (userdel guidon; groupdel guidon-admin)"
}

"do_$action"
