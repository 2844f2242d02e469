# Shared by the load and fault scripts of tools/ (sourced, not run): the
# open-file limit, a free loopback port, waiting for a server's
# `listening on http://ADDR` line, and one loadgen run against a server.

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

# Runs the loadgen (tools/src/bin/loadgen/) against the server NAME listening
# on $addr as pid $server_pid, its output in $OUT/NAME.loadgen.log, then stops
# that server. Leaves the fields of the loadgen's RESULT line in the caller's
# associative array `result` as NAME.FIELD, and its exit status as NAME.exit.
# Further VAR=VALUE arguments go to the loadgen's environment.
run_loadgen() {
    local name=$1 rc=0 line kv
    shift
    echo "== $name on $addr (pid $server_pid): N=$N M=$M PACE=$PACE"
    env "$@" ADDR="$addr" SERVER_PID="$server_pid" timeout $((DEADLINE_S + 60)) \
        "$BIN/loadgen" 2>&1 | tee "$OUT/$name.loadgen.log" || rc=$?
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    line=$(grep '^RESULT ' "$OUT/$name.loadgen.log" || true)
    if [ -z "$line" ]; then
        echo "$name: the loadgen gave no RESULT (exit $rc)" >&2
        line="RESULT"
    fi
    for kv in ${line#RESULT}; do
        result["$name.${kv%%=*}"]=${kv#*=}
    done
    result["$name.exit"]=$rc
}
