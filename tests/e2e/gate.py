#!/usr/bin/env python3
"""A TCP forwarder with a gate, for the fault scenario (8) of the e2e suite.

    gate.py TARGET_HOST:PORT CLOSED_FILE PORT_FILE

Listens on a free 127.0.0.1 port (written to PORT_FILE once listening) and
forwards each connection to TARGET. While CLOSED_FILE exists, new connections
are accepted and closed at once, and open ones are cut: a client behind the
gate (sodguard's watchers) sees the API server as unreachable; removing the
file opens the gate again. TLS passes through untouched (the API server's
certificate is valid for 127.0.0.1). Runs until killed.
"""

import os
import socket
import sys
import threading
import time


def pump(src, dst, closed_file):
    try:
        src.settimeout(0.5)
        while True:
            if os.path.exists(closed_file):
                break
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


def main():
    target, closed_file, port_file = sys.argv[1], sys.argv[2], sys.argv[3]
    host, port = target.rsplit(":", 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.replace(tmp, port_file)
    while True:
        client, _ = srv.accept()
        if os.path.exists(closed_file):
            client.close()
            continue
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            time.sleep(0.05)
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b, closed_file), daemon=True).start()


if __name__ == "__main__":
    main()
