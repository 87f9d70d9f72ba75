"""A warm start for ``tailbank`` commands: one server pays the imports, each command forks.

Every ``tailbank`` stage spends about 6 s importing torch, ``torch._dynamo`` (which
``torch.optim`` imports on its first optimizer), scikit-learn and scipy before a few seconds of
work on a small bank; a DAG of 42 stages pays that 42 times. ``tailbank warm`` starts a server
that imports those third-party libraries once and listens on a Unix socket. A ``tailbank``
started with ``TAILBANK_WARM=<socket>`` in its environment (``stages.entry``) connects and
hands over its command line, working directory, environment, ``sys.path``, umask and its
stdin, stdout and stderr (the descriptors themselves, so pipes, terminals and progress bars
behave as before). The server forks; the child drops every module of tailbank's own packages,
so the command imports the code on disk now, takes over the client's state and runs the CLI.

What stays the same as a cold start:
- the exit status, or the signal that killed the command (the client kills itself with it);
- SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the client are passed to the command (Ctrl-C's
  SIGINT and SIGQUIT to its whole process group, as a terminal would), so its interrupt
  handlers run; a signal the client ignores (``nohup``) the command ignores too; a client
  killed outright (SIGKILL) takes the command with it;
- the bytes written: the forked child runs the same code on the same libraries. A client is
  refused, and runs cold saying why, when its import-time environment differs from the
  server's (thread counts, CUDA and torch variables, locale, Python flags:
  ``import_time_env``) or its ``sys.path`` finds another copy of a preloaded library.
  matplotlib is not preloaded: it reads ``matplotlibrc`` from the working folder at import.

The server never initialises CUDA (only importing torch, which does not), so a child can use
the GPU as a cold process would: CUDA cannot be used in a child forked after its
initialisation. Linux only: it needs ``fork`` and ``SCM_RIGHTS``.

The package, one concern a module, imports nothing outside the standard library: the client
side runs before any third-party import.

- `protocol`: the names, the import-time environment rules and the wire format both sides use;
- `client`: `delegate`, the client side (`stages.entry` calls it);
- `server`: `serve`, the listening loop and the checks of each request;
- `child`: the forked child that becomes the client's command;
- `command`: ``tailbank warm`` (serve in the foreground, or around one command).
"""

from __future__ import annotations

from stages.warm.client import delegate
from stages.warm.protocol import (
    NOT_PRELOADED,
    OWN_PACKAGES,
    PRELOAD,
    SOCKET_ENV,
    WarmError,
    import_time_env,
    supported,
)
from stages.warm.server import check_socket_path, default_socket, serve

__all__ = [
    "NOT_PRELOADED",
    "OWN_PACKAGES",
    "PRELOAD",
    "SOCKET_ENV",
    "WarmError",
    "check_socket_path",
    "default_socket",
    "delegate",
    "import_time_env",
    "serve",
    "supported",
]
