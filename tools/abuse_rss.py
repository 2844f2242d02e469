"""Loads the chat example on loopback and reads its RSS from /proc (issue 13).

    cargo build --release -p tower-sse-chat
    ADDR=127.0.0.1:3913 target/release/chat & PID=$! python3 tools/abuse_rss.py room 5000


room N       : N members of one room that never read (4 KiB receive buffers)
churn R N    : R rounds of N connections in N rooms that open, get the head, then close
"""
import socket, sys, time, os

ADDR = ("127.0.0.1", int(os.environ.get("PORT", "3913")))
PID = int(os.environ["PID"])

def rss():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return -1

def open_stream(path, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(ADDR)
    s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n".encode())
    return s

def room(n):
    print(f"start: {rss()} MB", flush=True)
    socks = []
    t0 = time.time()
    for i in range(n):
        socks.append(open_stream(f"/sse?room=big&name=m{i}", rcvbuf=4096))
    time.sleep(3)
    print(f"{n} members that never read, {time.time()-t0:.1f}s after the first joined: {rss()} MB", flush=True)
    for wait in (15, 30, 45):
        time.sleep(wait - (time.time() - t0) if wait > time.time() - t0 else 0)
        # a live probe: how many are still listed
        p = open_stream("/sse?room=big&name=probe")
        p.settimeout(5)
        data = b""
        while b"event: members" not in data or b"\n\n" not in data.split(b"event: members", 1)[1]:
            chunk = p.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        block = data.split(b"event: members", 1)[1].split(b"\n\n", 1)[0]
        listed = block.count(b'"m')
        p.close()
        print(f"t={time.time()-t0:.0f}s: {listed} non-readers still listed, RSS {rss()} MB", flush=True)
    for s in socks:
        s.close()
    time.sleep(5)
    print(f"after all closed: {rss()} MB", flush=True)

def churn(rounds, n):
    print(f"start: {rss()} MB", flush=True)
    for r in range(rounds):
        socks = []
        for i in range(n):
            s = open_stream(f"/sse?room=r{r}x{i}&name=u{i}")
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            s.recv(4096)
        peak = rss()
        for s in socks:
            s.close()
        time.sleep(20)
        print(f"round {r+1}: {n} connections in {n} rooms: peak {peak} MB, after they left {rss()} MB", flush=True)

if sys.argv[1] == "room":
    room(int(sys.argv[2]))
else:
    churn(int(sys.argv[2]), int(sys.argv[3]))
