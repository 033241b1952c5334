"""Runs a Python program with every outgoing TCP connection bound to a
source address, so one machine can be a client in France or in the US.

    python bound.py 127.0.0.5 -m awscli s3 ls
    /usr/bin/python3 bound.py 127.0.0.5 /usr/bin/s3cmd ls

awscli (through urllib3) and s3cmd (through http.client) have no option for
it; rclone has --bind and curl --interface. Only the source address changes:
the program, its requests and their signatures are untouched.
"""

import runpy
import socket
import sys


def main() -> None:
    source, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    plain = socket.create_connection

    def create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None,
                          **kwargs):
        return plain(address, timeout, source_address or (source, 0), **kwargs)

    socket.create_connection = create_connection
    try:
        # urllib3 dials through its own helper, not socket.create_connection.
        import urllib3.util.connection as u3

        u3_plain = u3.create_connection

        def u3_create_connection(address, timeout, source_address=None, socket_options=None):
            return u3_plain(address, timeout, source_address or (source, 0), socket_options)

        u3.create_connection = u3_create_connection
    except ImportError:
        pass
    if target == "-m":
        module, args = args[0], args[1:]
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *args]
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
