#!/usr/bin/env python3
"""Cold-start probes for peers.sh (milliseconds, one per line of output).

  coldstart.py process PORT HOST -- CMD...   start CMD, time until a GET answers 200
  coldstart.py hosts PORT HOST...            time one first GET per host, 100 ms apart
"""
import socket, subprocess, sys, time

def get(port, host, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    # Read to the end of the response (its Content-Length), not to the
    # server's close: the response is what the client waits for.
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            lengths = [l.split(b":", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if lengths and len(body) >= int(lengths[0]):
                break
    s.close()
    return data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else b""

mode, port = sys.argv[1], int(sys.argv[2])
if mode == "process":
    host = sys.argv[3]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if get(port, host) == b"200":
                break
        except OSError:
            time.sleep(0.0005)
        if time.perf_counter() - t0 > 30:
            print("timeout"); break
    print(f"{(time.perf_counter() - t0) * 1e3:.1f}")
    p.terminate(); p.wait()
else:
    for host in sys.argv[3:]:
        # New hosts arrive apart, as on a real node: the blank supply is
        # topped up in between.
        time.sleep(0.1)
        t0 = time.perf_counter()
        status = get(port, host)
        ms = (time.perf_counter() - t0) * 1e3
        print(f"{ms:.2f}" if status == b"200" else f"error {status!r}")
