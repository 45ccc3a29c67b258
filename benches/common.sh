# Shared by the benchmark scripts (source it; it defines functions and nothing runs):
# logging, installing what is missing, building, and starting Debian's sshd and RoseWire side
# by side on loopback. Every wait is bounded.

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

install_packages() { # install_packages PKG...: apt-get install, with sudo when not root
    [ $# -gt 0 ] || return 0
    log "installing $*"
    local sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@" >/dev/null \
        || die "apt-get install $* failed"
}

build_rosewire() { # sets ROSEWIRE: builds target/release/rosewire unless NO_BUILD or ROSEWIRE_BIN
    if [ -z "${NO_BUILD:-}" ] && [ -z "${ROSEWIRE_BIN:-}" ]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    ROSEWIRE=${ROSEWIRE_BIN:-$ROOT/target/release/rosewire}
    [ -x "$ROSEWIRE" ] || die "$ROSEWIRE missing"
}

stop_pids() { # TERM, then up to 10 s for them to go, then KILL
    [ $# -gt 0 ] || return 0
    kill "$@" 2>/dev/null || true
    local p _
    for _ in $(seq 1 100); do
        local alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1 && break; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    kill -KILL "$@" 2>/dev/null || true
    wait "$@" 2>/dev/null || true
}

drop_work() { # drop_work RC: removes $WORK, or keeps it (and says where) with KEEP or a failure
    if [ -n "${KEEP:-}" ] || [ "$1" -ne 0 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}

free_port() { # an unused TCP port on address $1 (the race with other programs is harmless here)
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

keygen() { ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$1"; }

vm() { awk -v k="$2:" '$1==k {printf "%.1f", $2/1024}' "/proc/$1/status"; } # vm PID VmRSS: MiB

# start_sshd DIR IP [CONFIG-LINE...]: Debian's sshd as an ordinary process, with its own host
# key and DIR/authorized_keys (which the caller writes). Sets SSHD_USER, SSHD_PORT, SSHD_PID.
start_sshd() {
    local dir=$1 ip=$2; shift 2
    keygen "$dir/host_ed25519" sshd-host
    SSHD_USER=$(id -un)
    SSHD_PORT=$(free_port "$ip")
    # Debian's bash sources ~/.bashrc even for `ssh host true` when it thinks sshd started it
    # (SSH_CLIENT set, SHLVL < 2). A heavy .bashrc (pyenv, conda, nvm...) would then be timed
    # as "sshd". SetEnv SHLVL=1 makes bash see level 2 and skip it: we time sshd, not rc files.
    {
        cat <<EOF
ListenAddress $ip
Port $SSHD_PORT
HostKey $dir/host_ed25519
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $SSHD_USER
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
LogLevel ERROR
SetEnv SHLVL=1
EOF
        printf '%s\n' "$@"
    } >"$dir/sshd_config"
    # Privilege separation directory (needed when sshd runs as root; harmless otherwise).
    if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
    /usr/sbin/sshd -t -f "$dir/sshd_config" || die "sshd -t rejected the config"
    /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
    SSHD_PID=$!
    local _
    for _ in $(seq 1 300); do # up to 30 s
        python3 -c 'import socket,sys; socket.create_connection((sys.argv[1],int(sys.argv[2])),1).close()' \
            "$ip" "$SSHD_PORT" 2>/dev/null && return 0
        kill -0 "$SSHD_PID" 2>/dev/null || die "sshd exited: $(cat "$dir/sshd.log")"
        sleep 0.1
    done
    die "sshd did not accept connections within 30 s"
}

# start_rosewire DIR IP [ARG...]: `rosewire serve` with DIR/config.toml (which the caller
# writes), data in DIR/data, logs in DIR, domain $ROSEWIRE_DOMAIN (default bench.test; "IP:0"
# names a federated instance by its HTTP port), extra ARGs (such as --bootstrap URL) last.
# Sets ROSEWIRE_PID, OURS_PORT (SSH), OURS_HTTP_PORT and OURS_DOMAIN.
start_rosewire() {
    local dir=$1 ip=$2
    shift 2
    NO_COLOR=1 ROSEWIRE_LOG=${ROSEWIRE_LOG:-info} "$ROSEWIRE" serve --config "$dir/config.toml" \
        --data-dir "$dir/data" --domain "${ROSEWIRE_DOMAIN:-bench.test}" \
        --ssh-listen "$ip:0" --http-listen "$ip:0" --dev "$@" \
        </dev/null >"$dir/stdout.log" 2>"$dir/server.log" &
    ROSEWIRE_PID=$!
    OURS_PORT=
    local _
    for _ in $(seq 1 300); do # up to 30 s
        OURS_PORT=$(sed -n "s/^listening: ssh=$ip:\([0-9]*\) .*/\1/p" "$dir/stdout.log")
        OURS_HTTP_PORT=$(sed -n "s/^listening: .* http=$ip:\([0-9]*\)$/\1/p" "$dir/stdout.log")
        OURS_DOMAIN=$(sed -n "s/^RoseWire .* serving //p" "$dir/stdout.log")
        [ -n "$OURS_PORT" ] && return 0
        kill -0 "$ROSEWIRE_PID" 2>/dev/null || die "rosewire exited: $(tail -5 "$dir/server.log")"
        sleep 0.1
    done
    die "rosewire did not print its listening line within 30 s"
}
