#!/usr/bin/env bash
# Boots systemd as PID 1 of private PID/mount/UTS/IPC/cgroup namespaces, for the systemd tests.
#
# A booted systemd runs tmpfiles and friends that would wipe the machine's /tmp, so this script never
# execs systemd unless it is PID 1 of a fresh PID namespace, inside a private mount namespace, with
# fresh tmpfs mounts on /run, /tmp, /var/tmp, /var/lib/systemd and /etc/systemd/system (which gets
# only the units under test), and /etc, /usr/local and /var/lib as overlays. It refuses otherwise.
#
#   namespace-systemd.sh start STATE TARGET [OWNER]
#                                             boot; prints the host PID of the namespace's PID 1.
#                                             With OWNER (a PID), also stop it when OWNER dies.
#   namespace-systemd.sh wait STATE [SECONDS] wait until the boot job queue is empty
#   namespace-systemd.sh exec STATE CMD...    run CMD inside the namespaces (systemctl, journalctl, …)
#   namespace-systemd.sh stop STATE           kill -KILL PID 1 (it ignores SIGTERM), clean the cgroup
#
# STATE is a directory that stays visible inside the namespace (so NOT under /run, /tmp or /var/tmp),
# typically a staging root that systemd/install.sh --destdir filled, holding:
#   units/          copied into the namespace's /etc/systemd/system (units, drop-in directories)
#   etc/guidon/, etc/passwd, etc/group
#                   optional; copied into the namespace's /etc, an overlay whose upper layer is
#                   a tmpfs, so nothing the namespace writes to /etc reaches the machine
# and receives console.log (PID 1's console) and the pid files.
set -euo pipefail

die() { echo "namespace-systemd: $*" >&2; exit 1; }

absolute() { (cd "$1" && pwd -P); }

check_state_dir() {
    local state=$1
    [ -d "$state" ] || die "no state directory $state"
    case "$(absolute "$state")/" in
        /run/* | /tmp/* | /var/tmp/* | /var/lib/* | /etc/* | /usr/local/*)
            die "state directory $state would be hidden by the namespace's own mounts" ;;
    esac
}

# The cgroup v2 hierarchy of the host, which hands the namespace a subtree of its own.
host_cgroup2() {
    if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
        echo /sys/fs/cgroup
    elif [ -d /sys/fs/cgroup/unified ] && [ "$(stat -f -c %T /sys/fs/cgroup/unified)" = cgroup2fs ]; then
        echo /sys/fs/cgroup/unified
    else
        die "no cgroup v2 hierarchy found under /sys/fs/cgroup"
    fi
}

start() {
    local state target owner
    state=$(absolute "$1"); target=$2; owner=${3:-}
    check_state_dir "$state"
    [ -d "$state/units" ] || die "$state/units is missing"
    [ -f "$state/units/$target" ] || die "$state/units/$target is missing"
    command -v unshare >/dev/null || die "unshare not found"
    [ -x /lib/systemd/systemd ] || die "/lib/systemd/systemd not found"

    local cgroup
    cgroup="$(host_cgroup2)/guidon-test.$$"
    mkdir "$cgroup"
    echo "$cgroup" >"$state/cgroup"
    : >"$state/console.log"

    # The subshell moves itself into the new cgroup, which becomes the cgroup namespace's root.
    local host_mntns host_pidns
    host_mntns=$(readlink /proc/self/ns/mnt)
    host_pidns=$(readlink /proc/self/ns/pid)
    GUIDON_HOST_MNTNS=$host_mntns bash -c '
        echo $$ >"$1/cgroup.procs"
        shift
        exec unshare --pid --fork --mount --mount-proc --uts --ipc --cgroup --propagation private -- "$@"
    ' - "$cgroup" "$0" inner "$state" "$target" </dev/null >>"$state/console.log" 2>&1 &
    local unshare_pid=$! pid="" child unshare_exe
    echo "$unshare_pid" >"$state/unshare.pid"
    unshare_exe=$(readlink -f "$(command -v unshare)")
    # PID 1 is unshare's child in a PID namespace other than ours.
    for _ in $(seq 200); do
        kill -0 "$unshare_pid" 2>/dev/null || die "unshare exited early: $(cat "$state/console.log")"
        if [ "$(readlink "/proc/$unshare_pid/exe" 2>/dev/null)" = "$unshare_exe" ]; then
            for child in $(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null || true); do
                if [ "$(readlink "/proc/$child/ns/pid" 2>/dev/null)" != "$host_pidns" ]; then pid=$child; fi
            done
        fi
        [ -n "$pid" ] && break
        sleep 0.05
    done
    if [ -z "$pid" ]; then
        kill -KILL "$unshare_pid" 2>/dev/null || true
        die "namespace PID 1 did not appear; console: $(cat "$state/console.log")"
    fi
    echo "$pid" >"$state/pid"
    if [ -n "$owner" ]; then
        # Should the test process die without stopping it, do not leave systemd running.
        (
            while kill -0 "$owner" 2>/dev/null && [ -d "/proc/$pid" ]; do sleep 1; done
            if [ -d "/proc/$pid" ] && [ -f "$state/pid" ]; then "$0" stop "$state"; fi
        ) </dev/null >>"$state/console.log" 2>&1 &
    fi
    echo "$pid"
}

# Runs as PID 1 of the new namespaces; prepares the mounts, then becomes systemd.
inner() {
    local state=$1 target=$2
    [ $$ -eq 1 ] || die "refusing to boot systemd: not PID 1 of a new PID namespace"
    [ -n "${GUIDON_HOST_MNTNS:-}" ] && [ "$(readlink /proc/self/ns/mnt)" != "$GUIDON_HOST_MNTNS" ] \
        || die "refusing to boot systemd: not in a private mount namespace"
    mount --make-rprivate /

    local dir
    for dir in /run /tmp /var/tmp /var/lib/systemd; do
        mount -t tmpfs -o mode=0755,nosuid,nodev guidon-test "$dir"
    done
    chmod 1777 /tmp /var/tmp
    # A persistent journal would be written to the machine's disk.
    if [ -d /var/log/journal ]; then mount -t tmpfs guidon-test /var/log/journal; fi
    # /etc and /usr/local become overlays whose upper layers live on a tmpfs of this namespace: whatever
    # the namespace writes there (/etc/guidon from ConfigurationDirectory=, users, an install.sh run)
    # never reaches the machine, and vanishes with the namespace. (A tmpfs also works as the upper
    # layer where the root file system is itself an overlay, as in containers.)
    rm -rf "$state/.overlay"
    mkdir -p "$state/.overlay"
    mount -t tmpfs -o mode=0700 guidon-test "$state/.overlay"
    # /var/lib too: StateDirectory= (/var/lib/guidon, the audit log) is created there.
    for dir in /etc /usr/local /var/lib; do
        mkdir -p "$state/.overlay$dir/upper" "$state/.overlay$dir/work"
        mount -t overlay guidon-test \
            -o "lowerdir=$dir,upperdir=$state/.overlay$dir/upper,workdir=$state/.overlay$dir/work" "$dir"
    done
    # The overlay on /var/lib hides the tmpfs mounted on /var/lib/systemd above: mount a fresh one again.
    mount -t tmpfs -o mode=0755,nosuid,nodev guidon-test /var/lib/systemd
    mount -t tmpfs -o mode=0755 guidon-test /etc/systemd/system
    for dir in /run /tmp /var/tmp /var/lib/systemd /etc/systemd/system; do
        [ "$(stat -f -c %T "$dir")" = tmpfs ] || die "refusing to boot systemd: $dir is not a fresh tmpfs"
    done
    for dir in /etc /usr/local /var/lib; do
        [ "$(stat -f -c %T "$dir")" = overlayfs ] || die "refusing to boot systemd: $dir is not an overlay"
    done

    mount -t cgroup2 cgroup2 /sys/fs/cgroup

    cp -a "$state/units/." /etc/systemd/system/
    local file
    for file in passwd group; do
        if [ -f "$state/etc/$file" ]; then cp -a "$state/etc/$file" "/etc/$file"; fi
    done
    if [ -d "$state/etc/guidon" ]; then
        rm -rf /etc/guidon
        cp -a "$state/etc/guidon" /etc/guidon
    fi

    # PID 1 logs to the journal; what it would write to /dev/console goes to the log instead of the
    # machine's console.
    mount --bind "$state/console.log" /dev/console
    hostname guidon-test

    export container=guidon-test
    exec /lib/systemd/systemd --system --unit="$target" --log-target=journal --log-level=info \
        --show-status=no
}

pid_of() {
    local state=$1 pid
    pid=$(cat "$state/pid" 2>/dev/null) || die "not started: no $state/pid"
    [ -d "/proc/$pid" ] || die "namespace PID 1 ($pid) is gone; console: $(tail -n 30 "$state/console.log")"
    echo "$pid"
}

wait_booted() {
    local state=$1 timeout=${2:-30} pid
    pid=$(pid_of "$state")
    local deadline=$((SECONDS + timeout))
    until [ -S "/proc/$pid/root/run/systemd/private" ]; do
        [ $SECONDS -lt $deadline ] || die "systemd did not come up within ${timeout}s"
        [ -d "/proc/$pid" ] || die "namespace PID 1 died; console: $(tail -n 30 "$state/console.log")"
        sleep 0.05
    done
    local remaining=$((deadline - SECONDS))
    [ $remaining -gt 0 ] || remaining=1
    local status
    status=$(nsenter -t "$pid" -m -p -- timeout "$remaining" systemctl is-system-running --wait || true)
    case "$status" in
        running) ;;
        *) die "system state after boot: '${status:-timeout}'" ;;
    esac
}

run_inside() {
    local state=$1; shift
    local pid
    pid=$(pid_of "$state")
    exec nsenter -t "$pid" -m -p -u -i -C -- "$@"
}

stop() {
    local state=$1 pid unshare_pid cgroup
    pid=$(cat "$state/pid" 2>/dev/null || true)
    unshare_pid=$(cat "$state/unshare.pid" 2>/dev/null || true)
    # Only ever the namespace's PID 1: a child of our unshare, in another PID namespace than ours.
    # Its death takes every other process of the namespace with it.
    if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
        if [ "$(awk '{print $4}' "/proc/$pid/stat")" = "$unshare_pid" ] \
            && [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ]; then
            kill -KILL "$pid"
        else
            echo "namespace-systemd: PID $pid is not the namespace's PID 1; not killing it" >&2
        fi
    fi
    local process
    for process in $pid $unshare_pid; do
        for _ in $(seq 300); do [ -d "/proc/$process" ] || break; sleep 0.05; done
        [ ! -d "/proc/$process" ] || echo "namespace-systemd: PID $process is still running" >&2
    done
    cgroup=$(cat "$state/cgroup" 2>/dev/null || true)
    if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
        for _ in $(seq 100); do
            find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$cgroup" ] || break
            sleep 0.05
        done
        [ ! -d "$cgroup" ] || echo "namespace-systemd: could not remove $cgroup" >&2
    fi
    rm -f "$state/pid" "$state/unshare.pid" "$state/cgroup"
    rm -rf "$state/.overlay"
}

[ $# -ge 2 ] || die "usage: $0 start|wait|exec|stop STATE …"
command=$1; shift
case "$command" in
    start) [ $# -ge 2 ] || die "usage: $0 start STATE TARGET [OWNER]"; start "$@" ;;
    inner) inner "$@" ;;
    wait) wait_booted "$@" ;;
    exec) run_inside "$@" ;;
    stop) stop "$@" ;;
    *) die "unknown command $command" ;;
esac
