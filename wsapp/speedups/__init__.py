"""wsapp's optional C code, one file per job, and the pure Python it replaces.

- `_framing.c`: scan complete small data frames (unmask, UTF-8 check) and encode frames.
- `_fanout.c`: `send_all(fds, frame)`, one non-blocking send per socket (io_uring batches).
- `pure`: the same functions in Python; `mask`: the payload masker.
- `select`: the one module the rest of wsapp imports; it picks compiled or pure.
- `build`: `python -m wsapp.speedups.build [--require]` compiles the C files in place.

Nothing here imports the rest of wsapp, and the C code reads no Python object but its
arguments.
"""
