/* wsapp.speedups._fanout: one frame to many sockets, in C (optional).
 *
 * send_all(fds, frame) -> list[tuple[int, int]]
 *     One non-blocking send(fd, frame, MSG_DONTWAIT | MSG_NOSIGNAL) to each descriptor, in
 *     order, and only the descriptors that did not take the whole frame come back, as
 *     (index in fds, bytes sent) for a partial send, (index, 0) when the socket buffer is
 *     full (EAGAIN / EWOULDBLOCK), or (index, -errno) for any other error. `fds` is an
 *     iterable of ints, or a C-contiguous buffer of C ints (array('i')), read in place; a
 *     value that is not an int, or does not fit a C int, raises before anything is sent.
 *     `frame` is any C-contiguous bytes-like object. wsapp/speedups/pure.py has the same
 *     function in Python and the tests run both.
 *
 *     This file touches no Python object but those three: which sockets may be written
 *     now, and what to do with the ones that were not sent whole, is the caller's rule.
 *
 * set_ring(enabled) -> str
 *     Send through io_uring (the default) or with one send() per descriptor: returns
 *     "io_uring", "send" (switched off) or "send (io_uring: <why not>)".
 * ring_owner() -> int
 *     The pid whose ring is set up in this process (0: none); for the fork test.
 * ring_submits() -> int
 *     How many batches this process has handed to io_uring; for the batching test.
 * _ring_force_async(on) -> None
 *     Tests only: submit without MSG_DONTWAIT (see ring_send).
 *
 * The GIL is held throughout, on purpose. Every send is non-blocking, so there is nothing
 * to wait for that another thread could use; wsapp serves with gevent in one thread, so
 * there is no other thread to let in; and the ring is one per process, so holding the GIL
 * is also what keeps two threads from filling it at once (no lock of our own).
 *
 * Longer than wsapp's usual 400 lines because io_uring is driven by its raw system calls
 * (no liburing dependency): ring set-up, probe, submit, reap and cancel are kept here with
 * their only user.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- io_uring, or one send() each ----
 *
 * A broadcast is one small non-blocking send per member, and on loopback most of its CPU
 * is the kernel's. io_uring hands the kernel up to SEND_BATCH of them in one system call
 * (fewer entries, exits and file lookups; docs/performance.md). Every SEND carries
 * MSG_DONTWAIT, so the kernel finishes each one (all sent, part sent, EAGAIN or an error)
 * while it is submitted: nothing is in flight when ring_send() returns, and the results
 * are those send() would give, one per socket, in order. The ring is per process (a
 * forked worker makes its own) and used only with the GIL held.
 */

#if defined(__linux__) && defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#define HAVE_RING 1
#endif
#endif

#define SEND_BATCH 1024

#ifdef HAVE_RING
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct {
    int fd;            /* -1: none */
    pid_t pid;         /* the process that set it up */
    unsigned *sq_head, *sq_tail, *sq_mask, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_len;
    int wanted;        /* set_ring(True), the default */
    int failed_errno;  /* why io_uring cannot be used here (0: not known to fail) */
    const char *failed_reason;  /* or this, when it is not an errno */
    unsigned long long submits; /* batches handed to the kernel */
} ring = {.fd = -1, .wanted = 1};

static void
ring_close(void)
{
    if (ring.fd < 0) {
        return;
    }
    if (ring.sqes != MAP_FAILED && ring.sqes != NULL) {
        munmap(ring.sqes, ring.sqes_len);
    }
    if (ring.cq_map != MAP_FAILED && ring.cq_map != NULL) {
        munmap(ring.cq_map, ring.cq_map_len);
    }
    if (ring.sq_map != MAP_FAILED && ring.sq_map != NULL) {
        munmap(ring.sq_map, ring.sq_map_len);
    }
    ring.sqes = NULL;
    ring.cq_map = ring.sq_map = NULL;
    close(ring.fd);
    ring.fd = -1;
}

/* Whether the kernel has IORING_OP_SEND and IORING_OP_ASYNC_CANCEL (5.6 and later; the
 * probe came with them). */
static int
ring_supports_send(void)
{
    struct io_uring_probe *probe;
    int supported;

    probe = calloc(1, sizeof *probe + 256 * sizeof(struct io_uring_probe_op));
    if (probe == NULL) {
        return 0;
    }
    supported = syscall(__NR_io_uring_register, ring.fd, IORING_REGISTER_PROBE, probe, 256) == 0
                && probe->last_op >= IORING_OP_ASYNC_CANCEL && probe->last_op >= IORING_OP_SEND
                && (probe->ops[IORING_OP_SEND].flags & IO_URING_OP_SUPPORTED)
                && (probe->ops[IORING_OP_ASYNC_CANCEL].flags & IO_URING_OP_SUPPORTED);
    free(probe);
    return supported;
}

/* 0, or -1 with errno set. */
static int
ring_setup(void)
{
    struct io_uring_params p;
    unsigned *array, i;

    memset(&p, 0, sizeof p);
    ring.fd = (int)syscall(__NR_io_uring_setup, SEND_BATCH, &p);
    if (ring.fd < 0) {
        return -1;
    }
    ring.sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    ring.cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    ring.sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    ring.sq_map = mmap(NULL, ring.sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                       ring.fd, IORING_OFF_SQ_RING);
    ring.cq_map = mmap(NULL, ring.cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                       ring.fd, IORING_OFF_CQ_RING);
    ring.sqes = mmap(NULL, ring.sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     ring.fd, IORING_OFF_SQES);
    if (ring.sq_map == MAP_FAILED || ring.cq_map == MAP_FAILED || ring.sqes == MAP_FAILED) {
        int saved = errno;
        ring_close();
        errno = saved;
        return -1;
    }
    if (p.sq_entries < SEND_BATCH || p.cq_entries < SEND_BATCH) {
        ring_close();
        errno = ENOMEM;
        return -1;
    }
    ring.sq_head = (unsigned *)((char *)ring.sq_map + p.sq_off.head);
    ring.sq_tail = (unsigned *)((char *)ring.sq_map + p.sq_off.tail);
    ring.sq_mask = (unsigned *)((char *)ring.sq_map + p.sq_off.ring_mask);
    array = (unsigned *)((char *)ring.sq_map + p.sq_off.array);
    for (i = 0; i < p.sq_entries; i++) {
        array[i] = i;
    }
    if (!ring_supports_send()) {
        ring_close();
        errno = EOPNOTSUPP; /* a kernel older than 5.6: io_uring without IORING_OP_SEND */
        return -1;
    }
    ring.cq_head = (unsigned *)((char *)ring.cq_map + p.cq_off.head);
    ring.cq_tail = (unsigned *)((char *)ring.cq_map + p.cq_off.tail);
    ring.cq_mask = (unsigned *)((char *)ring.cq_map + p.cq_off.ring_mask);
    ring.cqes = (struct io_uring_cqe *)((char *)ring.cq_map + p.cq_off.cqes);
    ring.pid = getpid();
    return 0;
}

static void
ring_give_up(int why, const char *reason)
{
    ring_close();
    ring.failed_errno = why ? why : ENOSYS;
    ring.failed_reason = reason;
}

/* 1 if this process may send through the ring, 0 if it must use send(). */
static int
ring_ready(void)
{
    if (!ring.wanted || ring.failed_errno) {
        return 0;
    }
    if (ring.fd >= 0 && ring.pid == getpid()) {
        return 1;
    }
    ring_close(); /* inherited across fork(): the parent's, never to be shared */
    if (ring_setup() < 0) {
        ring_give_up(errno, NULL); /* e.g. seccomp or kernel.io_uring_disabled: EPERM */
        return 0;
    }
    return 1;
}

#define PENDING PY_SSIZE_T_MIN          /* a result not known yet */
#define CANCEL_TAG ((uint64_t)1 << 62)  /* user_data of a cancel request */

/* MSG_DONTWAIT on every send; only the tests take it away (_ring_force_async), to make
 * the kernel park sends the way a kernel that ignores MSG_DONTWAIT would. */
static int ring_msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;

/* Read the completions that are there: results of sends, and count cancel completions. */
static void
ring_reap(Py_ssize_t n, Py_ssize_t *results, unsigned *sends_done, unsigned *cancels_done)
{
    unsigned head = *ring.cq_head, ready = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
    for (; head != ready; head++) {
        struct io_uring_cqe *cqe = &ring.cqes[head & *ring.cq_mask];
        if (cqe->user_data & CANCEL_TAG) {
            (*cancels_done)++;
        }
        else if (cqe->user_data < (uint64_t)n) {
            results[cqe->user_data] = cqe->res;
            (*sends_done)++;
        }
    }
    __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
}

/* Send buf to fds[0..n) (n <= SEND_BATCH) with one io_uring_enter: results[i] = bytes sent
 * or -errno. Returns how many the kernel took (their results are set); the caller sends
 * the others itself.
 *
 * A send must never stay in flight after this returns (a later frame to the same socket
 * would overtake it), and the caller must never wait on a slow socket. Every SEND
 * therefore carries MSG_DONTWAIT and completes while it is submitted. Should a kernel park
 * one instead (arm a poll and retry later), it is cancelled here: a cancelled send sent
 * nothing, so it counts as 0 bytes (the caller queues the frame), and the ring is given
 * up for send() from then on. */
static Py_ssize_t
ring_send(const int *fds, Py_ssize_t n, const void *buf, size_t len, Py_ssize_t *results)
{
    unsigned tail = *ring.sq_tail, mask = *ring.sq_mask, taken;
    unsigned sends_done = 0, cancels_done = 0, cancels = 0;
    Py_ssize_t i;
    int entered, parked;

    for (i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = &ring.sqes[(tail + (unsigned)i) & mask];
        memset(sqe, 0, sizeof *sqe);
        sqe->opcode = IORING_OP_SEND;
        sqe->fd = fds[i];
        sqe->addr = (uint64_t)(uintptr_t)buf;
        sqe->len = (uint32_t)len;
        sqe->msg_flags = (uint32_t)ring_msg_flags;
        sqe->user_data = (uint64_t)i;
        results[i] = PENDING;
    }
    __atomic_store_n(ring.sq_tail, tail + (unsigned)n, __ATOMIC_RELEASE);
    entered = (int)syscall(__NR_io_uring_enter, ring.fd, (unsigned)n, 0, 0, NULL, 0);
    taken = __atomic_load_n(ring.sq_head, __ATOMIC_ACQUIRE) - tail;
    if (taken > 0) {
        ring.submits++;
    }
    if (taken < (unsigned)n) {
        /* Not taken (interrupted by a signal, or refused): withdrawn, so they can never go
         * out later, and left to send(). */
        __atomic_store_n(ring.sq_tail, tail + taken, __ATOMIC_RELEASE);
        if (entered < 0 && taken == 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) {
            ring_give_up(errno, NULL); /* e.g. io_uring_enter blocked by seccomp */
            return 0;
        }
    }
    ring_reap(n, results, &sends_done, &cancels_done);
    parked = sends_done < taken;
    if (parked) {
        unsigned ctail = *ring.sq_tail;
        for (i = 0; i < (Py_ssize_t)taken; i++) {
            if (results[i] == PENDING) {
                struct io_uring_sqe *sqe = &ring.sqes[(ctail + cancels) & mask];
                memset(sqe, 0, sizeof *sqe);
                sqe->opcode = IORING_OP_ASYNC_CANCEL;
                sqe->fd = -1;
                sqe->addr = (uint64_t)i; /* the user_data of the send to cancel */
                sqe->user_data = CANCEL_TAG | (uint64_t)i;
                cancels++;
            }
        }
        __atomic_store_n(ring.sq_tail, ctail + cancels, __ATOMIC_RELEASE);
    }
    while (sends_done < taken || cancels_done < cancels) {
        unsigned submit = *ring.sq_tail - *ring.sq_head;
        unsigned wait = (taken - sends_done) + (cancels - cancels_done);
        if (syscall(__NR_io_uring_enter, ring.fd, submit, wait, IORING_ENTER_GETEVENTS, NULL, 0) < 0
            && errno != EINTR) {
            /* Cannot happen with a working ring; the frames may or may not have gone out,
             * so these sockets get -EIO (the caller closes them) rather than a duplicate. */
            for (i = 0; i < (Py_ssize_t)taken; i++) {
                if (results[i] == PENDING) {
                    results[i] = -EIO;
                }
            }
            ring_give_up(errno, NULL);
            return (Py_ssize_t)taken;
        }
        ring_reap(n, results, &sends_done, &cancels_done);
    }
    if (parked) {
        for (i = 0; i < (Py_ssize_t)taken; i++) {
            if (results[i] == -ECANCELED) {
                results[i] = 0; /* cancelled before it sent anything */
            }
        }
        ring_give_up(0, "this kernel parks MSG_DONTWAIT sends");
    }
    return (Py_ssize_t)taken;
}

#endif /* HAVE_RING */

/* One non-blocking send of buf to every fd: results[i] = bytes sent or -errno. */
static void
send_each(const int *fds, Py_ssize_t n, const void *buf, size_t len, Py_ssize_t *results)
{
    Py_ssize_t i = 0;
#ifdef HAVE_RING
    /* A lone send gains nothing from the ring; a send over 2 GiB would not fit its result
     * (a 32-bit cqe->res). */
    while (n - i > 1 && len <= INT32_MAX && ring_ready()) {
        Py_ssize_t chunk = n - i < SEND_BATCH ? n - i : SEND_BATCH;
        Py_ssize_t taken = ring_send(fds + i, chunk, buf, len, results + i);
        i += taken;
        if (taken < chunk) {
            break;
        }
    }
#endif
    for (; i < n; i++) {
        ssize_t sent;
        do {
            sent = send(fds[i], buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        results[i] = sent < 0 ? -(Py_ssize_t)errno : (Py_ssize_t)sent;
    }
}

/* The descriptors as a C array: in place from an array('i')-like buffer, else converted. */
typedef struct {
    const int *fds;
    Py_ssize_t n;
    Py_buffer view;    /* held while fds points into it */
    int have_view;
    int *owned;        /* or a copy of our own */
} fd_array;

static int
is_c_int_format(const char *format)
{
    return format != NULL && (strcmp(format, "i") == 0 || strcmp(format, "@i") == 0);
}

/* 0, or -1 with an exception set (nothing to release then). */
static int
fd_array_get(PyObject *obj, fd_array *out)
{
    PyObject *items;
    Py_ssize_t i;

    memset(out, 0, sizeof *out);
    if (PyObject_CheckBuffer(obj)) {
        if (PyObject_GetBuffer(obj, &out->view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) == 0) {
            if (out->view.ndim == 1 && out->view.itemsize == (Py_ssize_t)sizeof(int)
                && is_c_int_format(out->view.format)) {
                out->have_view = 1;
                out->fds = (const int *)out->view.buf;
                out->n = out->view.len / (Py_ssize_t)sizeof(int);
                return 0;
            }
            PyBuffer_Release(&out->view);
        }
        else {
            PyErr_Clear(); /* not a plain buffer of C ints: read it as a sequence below */
        }
    }
    /* A tuple of our own: converting an item may run Python code (__index__), which must
     * not be able to change what we iterate. */
    items = PySequence_Tuple(obj);
    if (items == NULL) {
        return -1;
    }
    out->n = PyTuple_GET_SIZE(items);
    out->owned = PyMem_New(int, out->n ? out->n : 1);
    if (out->owned == NULL) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < out->n; i++) {
        long value = PyLong_AsLong(PyTuple_GET_ITEM(items, i));
        if (value == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (value < INT_MIN || value > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "file descriptor out of range for a C int");
            goto error;
        }
        out->owned[i] = (int)value;
    }
    Py_DECREF(items);
    out->fds = out->owned;
    return 0;

error:
    Py_DECREF(items);
    PyMem_Free(out->owned);
    out->owned = NULL;
    return -1;
}

static void
fd_array_release(fd_array *fds)
{
    if (fds->have_view) {
        PyBuffer_Release(&fds->view);
    }
    PyMem_Free(fds->owned);
}

/* Append (index, code) to out: 0 or -1 with an exception. */
static int
append_result(PyObject *out, Py_ssize_t index, Py_ssize_t code)
{
    PyObject *pair = Py_BuildValue("(nn)", index, code);
    int result;
    if (pair == NULL) {
        return -1;
    }
    result = PyList_Append(out, pair);
    Py_DECREF(pair);
    return result;
}

static PyObject *
send_all(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    fd_array fds;
    Py_buffer frame;
    Py_ssize_t i, *results;
    PyObject *out;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_all(fds, frame)");
        return NULL;
    }
    if (fd_array_get(args[0], &fds) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &frame, PyBUF_SIMPLE) < 0) {
        fd_array_release(&fds);
        return NULL;
    }
    out = PyList_New(0);
    results = PyMem_New(Py_ssize_t, fds.n ? fds.n : 1);
    if (out == NULL || results == NULL) {
        if (results == NULL) {
            PyErr_NoMemory();
        }
        Py_CLEAR(out);
        goto done;
    }
    send_each(fds.fds, fds.n, frame.buf, (size_t)frame.len, results);
    for (i = 0; i < fds.n; i++) {
        Py_ssize_t sent = results[i];
        if (sent == frame.len) {
            continue;
        }
        if (sent == -EAGAIN || sent == -EWOULDBLOCK) {
            sent = 0; /* the socket buffer is full: nothing was sent */
        }
        if (append_result(out, i, sent) < 0) {
            Py_CLEAR(out);
            goto done;
        }
    }

done:
    PyMem_Free(results);
    PyBuffer_Release(&frame);
    fd_array_release(&fds);
    return out;
}

static PyObject *
set_ring(PyObject *module, PyObject *enabled)
{
    int on = PyObject_IsTrue(enabled);
    if (on < 0) {
        return NULL;
    }
#ifdef HAVE_RING
    ring.wanted = on;
    if (!on) {
        ring_close();
        return PyUnicode_FromString("send");
    }
    ring.failed_errno = 0; /* asked again: try again */
    ring.failed_reason = NULL;
    if (ring_ready()) {
        return PyUnicode_FromString("io_uring");
    }
    return PyUnicode_FromFormat("send (io_uring: %s)",
                                ring.failed_reason ? ring.failed_reason
                                                   : strerror(ring.failed_errno));
#else
    return PyUnicode_FromString(on ? "send (io_uring: not in this build)" : "send");
#endif
}

static PyObject *
ring_force_async(PyObject *module, PyObject *on)
{
    int flag = PyObject_IsTrue(on);
    if (flag < 0) {
        return NULL;
    }
#ifdef HAVE_RING
    ring_msg_flags = flag ? MSG_NOSIGNAL : (MSG_DONTWAIT | MSG_NOSIGNAL);
#endif
    Py_RETURN_NONE;
}

static PyObject *
ring_owner(PyObject *module, PyObject *unused)
{
#ifdef HAVE_RING
    return PyLong_FromLong(ring.fd >= 0 ? (long)ring.pid : 0L);
#else
    return PyLong_FromLong(0L);
#endif
}

static PyObject *
ring_submits(PyObject *module, PyObject *unused)
{
#ifdef HAVE_RING
    return PyLong_FromUnsignedLongLong(ring.submits);
#else
    return PyLong_FromLong(0L);
#endif
}

static PyMethodDef methods[] = {
    {"send_all", (PyCFunction)(void (*)(void))send_all, METH_FASTCALL,
     "send_all(fds, frame) -> [(index, sent or -errno)] for the fds that did not take the\n"
     "whole frame (one non-blocking send each; see the top of _fanout.c)"},
    {"set_ring", set_ring, METH_O,
     "set_ring(enabled) -> 'io_uring' | 'send' | 'send (io_uring: <why not>)'"},
    {"ring_owner", ring_owner, METH_NOARGS,
     "ring_owner() -> pid of the process whose io_uring is set up, 0 if none"},
    {"ring_submits", ring_submits, METH_NOARGS,
     "ring_submits() -> batches this process has handed to io_uring"},
    {"_ring_force_async", ring_force_async, METH_O,
     "tests only: submit sends without MSG_DONTWAIT (see ring_send)"},
    {NULL, NULL, 0, NULL},
};

/* Single-phase init (m_size -1): the ring is state of the process, not of a module object. */
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", "One frame to many sockets, in C (wsapp.speedups).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    return PyModule_Create(&module);
}
