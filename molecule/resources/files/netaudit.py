# Airlock test hosts: log every network attempt that Python code makes (installed as sitecustomize).
# The audit hooks see socket.connect / socket.getaddrinfo / socket.sendto before the kernel does, so an
# attempt is logged even where the host has no route and it fails at once.
import sys


def _airlock_netaudit(event, args):
    if event not in ("socket.connect", "socket.getaddrinfo", "socket.sendto"):
        return
    try:
        if event == "socket.getaddrinfo":
            host = args[0]
        else:
            sock, addr = args[0], args[1]
            if sock.family == 1:  # AF_UNIX: local sockets (journald, dbus) are not network
                return
            host = addr[0]
        if isinstance(host, bytes):
            host = host.decode()
        if host in (None, "", "localhost") or str(host).startswith(("127.", "::1")):
            return
        line = f"{event} {host} {args[1:3]!r} {' '.join(sys.argv)[:200]}\n"
        try:
            with open("/var/log/airlock-netaudit.log", "a") as f:  # noqa: PTH123 (keeps sitecustomize light)
                f.write(line)
        except OSError:
            # a sandboxed service (read-only file system, own user) cannot write the log: its stderr goes to
            # the journal, where the verify reads these lines too
            import os

            if "JOURNAL_STREAM" in os.environ:
                sys.stderr.write("airlock-netaudit: " + line)
    except Exception:  # noqa: BLE001, S110 (an audit hook must never break the program it watches)
        pass


sys.addaudithook(_airlock_netaudit)
