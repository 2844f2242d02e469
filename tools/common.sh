# Shared by the load and fault scripts of tools/ (sourced, not run): the
# open-file limit, a free loopback port, and waiting for a server's
# `listening on http://ADDR` line.

# Raises the open-file limit to the hard limit; exits when it still does not
# exceed NEED + 100 (NEED descriptors for the run, and a few for the rest).
raise_files() {
    local need=$1 what=$2
    ulimit -n "$(ulimit -Hn)"
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -le $((need + 100)) ]; then
        echo "open-file limit $(ulimit -n) is too low for $what" >&2
        exit 1
    fi
}

# A free loopback port: below the ephemeral range (the clients of a previous
# run may still hold ports in it), and no socket of any state is bound to it.
free_port() {
    local port low
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    while :; do
        port=$((10000 + RANDOM % (low > 11000 ? low - 10000 : 20000)))
        if [ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ] &&
            ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Prints the address a server logging to LOG listens on, once it said so
# (10 s at most); else prints the log and fails, naming it WHAT.
wait_listening() {
    local log=$1 what=$2 addr
    for _ in $(seq 100); do
        addr=$(sed -n 's#^listening on http://##p' "$log" || true)
        if [ -n "$addr" ]; then
            echo "$addr"
            return
        fi
        sleep 0.1
    done
    echo "$what did not start:" >&2
    cat "$log" >&2
    return 1
}
