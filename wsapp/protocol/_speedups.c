/* C versions of the two per-message loops of wsapp.protocol.frames (optional).
 *
 * scan_data_frames(data, limit, events) -> int
 *     The parser's fast path (Parser._feed_fast), same rules, same result: it appends
 *     complete, unfragmented, masked text/binary frames with a 7- or 16-bit length to
 *     `events` (text as str, binary as bytes) and returns how many bytes it consumed.
 *     It stops, without raising, at the first frame that is anything else (control
 *     frame, fragment, 64-bit length, incomplete, over `limit`, text that is not valid
 *     UTF-8): the Python parser then applies every RFC 6455 rule to the rest.
 *
 * encode_messages(messages) -> list[bytes]
 *     One unfragmented server frame per message (frames.encode_message for a list).
 *
 * broadcast(conns, frame) -> list[tuple[conn, int | None]]
 *     The direct part of wsapp.connection.send_to_all: for each Connection that is ready
 *     (nothing queued, no writer, no batch in progress, not closing, its WebSocket OPEN
 *     and nobody holding its write lock) one non-blocking send() of `frame` to ws.fd,
 *     counting bytes_out / messages_out when the kernel took it all. Everything else is
 *     returned for the Python code to finish: (conn, None) not ready, (conn, n >= 0) a
 *     partial send, (conn, -errno) a dead socket. Same rules as the Python loop it
 *     replaces; the tests run both. The sends go to the kernel through io_uring, up to
 *     1024 per system call, or with one send() each (see "Sending one frame to many
 *     sockets" below).
 *
 * set_ring(enabled) -> str, ring_owner() -> int
 *     Choose io_uring or send() for broadcast() (WSAPP_IO_URING); the pid that owns the
 *     current ring (0: none), for the fork test.
 *
 * Built by `python -m wsapp.protocol.build_speedups` (make run / make test); without it
 * the pure Python versions run, and the tests check that both give identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

static void
unmask_into(char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *mask)
{
    uint32_t m32;
    uint64_t m64, v;
    Py_ssize_t i = 0;

    memcpy(&m32, mask, 4);
    m64 = ((uint64_t)m32 << 32) | m32; /* mask bytes twice, in memory order */
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, src + i, 8);
        v ^= m64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++) {
        dst[i] = (char)(src[i] ^ mask[i & 3]);
    }
}

static PyObject *
scan_data_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t limit, n, pos = 0;
    const unsigned char *d;
    PyObject *events;
    char small[512];

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scan_data_frames(data, limit, events)");
        return NULL;
    }
    limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    events = args[2];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    d = (const unsigned char *)view.buf;
    n = view.len;
    while (n - pos >= 6) {
        unsigned char b0 = d[pos], b1 = d[pos + 1];
        Py_ssize_t length = b1 & 0x7F, start;
        const unsigned char *mask;
        PyObject *item;

        if (b0 != 0x81 && b0 != 0x82) {
            break;
        }
        if (b1 < 0x80 || length == 127) {
            break;
        }
        if (length == 126) {
            if (n - pos < 8) {
                break;
            }
            length = ((Py_ssize_t)d[pos + 2] << 8) | d[pos + 3];
            start = pos + 8;
        }
        else {
            start = pos + 6;
        }
        if (length > n - start || length > limit) {
            break;
        }
        mask = d + start - 4;
        if (b0 == 0x82) {
            item = PyBytes_FromStringAndSize(NULL, length);
            if (item == NULL) {
                goto error;
            }
            unmask_into(PyBytes_AS_STRING(item), d + start, length, mask);
        }
        else {
            char *tmp = length <= (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc(length);
            if (tmp == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            unmask_into(tmp, d + start, length, mask);
            item = PyUnicode_DecodeUTF8(tmp, length, "strict");
            if (tmp != small) {
                PyMem_Free(tmp);
            }
            if (item == NULL) {
                if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    PyErr_Clear(); /* the Python parser reports it (1007) */
                    break;
                }
                goto error;
            }
        }
        if (PyList_Append(events, item) < 0) {
            Py_DECREF(item);
            goto error;
        }
        Py_DECREF(item);
        pos = start + length;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);

error:
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *
encode_one(PyObject *message)
{
    const char *payload;
    Py_ssize_t length, header;
    unsigned char first;
    Py_buffer view;
    int have_view = 0;
    PyObject *frame;
    unsigned char *out;

    if (PyUnicode_Check(message)) {
        payload = PyUnicode_AsUTF8AndSize(message, &length);
        if (payload == NULL) {
            return NULL;
        }
        first = 0x81;
    }
    else if (PyBytes_Check(message)) {
        payload = PyBytes_AS_STRING(message);
        length = PyBytes_GET_SIZE(message);
        first = 0x82;
    }
    else {
        if (PyObject_GetBuffer(message, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        have_view = 1;
        payload = (const char *)view.buf;
        length = view.len;
        first = 0x82;
    }
    header = length < 126 ? 2 : length < 65536 ? 4 : 10;
    frame = PyBytes_FromStringAndSize(NULL, header + length);
    if (frame != NULL) {
        out = (unsigned char *)PyBytes_AS_STRING(frame);
        out[0] = first;
        if (length < 126) {
            out[1] = (unsigned char)length;
        }
        else if (length < 65536) {
            out[1] = 126;
            out[2] = (unsigned char)(length >> 8);
            out[3] = (unsigned char)length;
        }
        else {
            uint64_t len64 = (uint64_t)length;
            int i;
            out[1] = 127;
            for (i = 0; i < 8; i++) {
                out[2 + i] = (unsigned char)(len64 >> (56 - 8 * i));
            }
        }
        memcpy(out + header, payload, length);
    }
    if (have_view) {
        PyBuffer_Release(&view);
    }
    return frame;
}

static PyObject *
encode_messages(PyObject *module, PyObject *messages)
{
    PyObject *seq, *result;
    Py_ssize_t i, count;

    seq = PySequence_Fast(messages, "encode_messages() needs a sequence");
    if (seq == NULL) {
        return NULL;
    }
    count = PySequence_Fast_GET_SIZE(seq);
    result = PyList_New(count);
    if (result == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    for (i = 0; i < count; i++) {
        PyObject *frame = encode_one(PySequence_Fast_GET_ITEM(seq, i));
        if (frame == NULL) {
            Py_DECREF(result);
            Py_DECREF(seq);
            return NULL;
        }
        PyList_SET_ITEM(result, i, frame);
    }
    Py_DECREF(seq);
    return result;
}

/* Interned attribute names, created at import. */
static PyObject *s_ws, *s_writer, *s_queue, *s_batch_owner, *s_closing, *s_state, *s_open,
    *s_write_lock, *s_locked, *s_fd, *s_bytes_out, *s_messages_out;

/* Attribute reads for broadcast(): it reads the same few __slots__ of up to thousands of
 * Connection/WebSocket objects per message, so it looks each slot's offset up once per type
 * (a member descriptor found on the type; anything else, e.g. a property in a subclass, goes
 * through PyObject_GetAttr as before). */
typedef struct {
    PyObject **name;
    PyTypeObject *type;   /* the type the offset was found on (a strong reference) */
    Py_ssize_t offset;    /* -1: use PyObject_GetAttr for this type */
} slot_cache;

static slot_cache c_ws = {&s_ws}, c_writer = {&s_writer}, c_queue = {&s_queue}, c_batch_owner = {&s_batch_owner},
                  c_closing = {&s_closing}, c_state = {&s_state}, c_write_lock = {&s_write_lock}, c_fd = {&s_fd},
                  c_bytes_out = {&s_bytes_out}, c_messages_out = {&s_messages_out};

static PyObject **
slot_address(PyObject *obj, slot_cache *cache)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (type != cache->type) {
        PyObject *descr = _PyType_Lookup(type, *cache->name);  /* borrowed, no exception */
        Py_ssize_t offset = -1;
        if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == T_OBJECT_EX && !(member->flags & READONLY)) {
                offset = member->offset;
            }
        }
        Py_INCREF(type);
        Py_XSETREF(cache->type, type);
        cache->offset = offset;
    }
    return cache->offset < 0 ? NULL : (PyObject **)((char *)obj + cache->offset);
}

/* obj.<slot> as a new reference, or NULL with an exception (AttributeError if unset). */
static PyObject *
slot_get(PyObject *obj, slot_cache *cache)
{
    PyObject **address = slot_address(obj, cache);
    if (address != NULL && *address != NULL) {
        return Py_NewRef(*address);
    }
    return PyObject_GetAttr(obj, *cache->name);
}

/* 1 if the attribute is truthy, 0 if not, -1 on error. */
static int
attr_true(PyObject *obj, slot_cache *cache)
{
    PyObject *value = slot_get(obj, cache);
    int result;
    if (value == NULL) {
        return -1;
    }
    result = PyObject_IsTrue(value);
    Py_DECREF(value);
    return result;
}

/* 1 if the attribute is None, 0 if not, -1 on error. */
static int
attr_none(PyObject *obj, slot_cache *cache)
{
    PyObject *value = slot_get(obj, cache);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return value == Py_None;
}

static int
add_to_attr(PyObject *obj, slot_cache *cache, Py_ssize_t amount)
{
    PyObject *value = slot_get(obj, cache), *delta, *sum, **address;
    if (value == NULL) {
        return -1;
    }
    delta = PyLong_FromSsize_t(amount);
    if (delta == NULL) {
        Py_DECREF(value);
        return -1;
    }
    sum = PyNumber_Add(value, delta);
    Py_DECREF(value);
    Py_DECREF(delta);
    if (sum == NULL) {
        return -1;
    }
    address = slot_address(obj, cache);
    if (address != NULL) {
        Py_XSETREF(*address, sum);
        return 0;
    }
    {
        int result = PyObject_SetAttr(obj, *cache->name, sum);
        Py_DECREF(sum);
        return result;
    }
}

/* 1 ready, 0 not ready, -1 error; on 1, *fd is the socket to write. */
static int
ready_to_send(PyObject *conn, PyObject *ws, int *fd)
{
    PyObject *value, *lock;
    int r;

    if ((r = attr_none(conn, &c_writer)) != 1) {
        return r;
    }
    if ((r = attr_true(conn, &c_queue)) != 0) {
        return r < 0 ? r : 0;
    }
    if ((r = attr_none(conn, &c_batch_owner)) != 1) {
        return r;
    }
    if ((r = attr_true(conn, &c_closing)) != 0) {
        return r < 0 ? r : 0;
    }
    value = slot_get(ws, &c_state);
    if (value == NULL) {
        return -1;
    }
    r = PyObject_RichCompareBool(value, s_open, Py_EQ);
    Py_DECREF(value);
    if (r != 1) {
        return r;
    }
    lock = slot_get(ws, &c_write_lock);
    if (lock == NULL) {
        return -1;
    }
    value = PyObject_CallMethodNoArgs(lock, s_locked);
    Py_DECREF(lock);
    if (value == NULL) {
        return -1;
    }
    r = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (r != 0) {
        return r < 0 ? r : 0;
    }
    value = slot_get(ws, &c_fd);
    if (value == NULL) {
        return -1;
    }
    *fd = (int)PyLong_AsLong(value);
    Py_DECREF(value);
    if (*fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    return *fd >= 0;
}

static int
leftover(PyObject *out, PyObject *conn, PyObject *code)
{
    PyObject *pair;
    int result;
    if (code == NULL) {
        return -1;
    }
    pair = PyTuple_Pack(2, conn, code);
    Py_DECREF(code);
    if (pair == NULL) {
        return -1;
    }
    result = PyList_Append(out, pair);
    Py_DECREF(pair);
    return result;
}

/* ---- Sending one frame to many sockets: io_uring, or one send() each ----
 *
 * A chat broadcast is one small non-blocking send per member, and on loopback about three
 * quarters of its CPU is the kernel's. io_uring hands the kernel up to SEND_BATCH of them in
 * one system call (fewer entries/exits and file lookups: 15-20 % less CPU per delivery in
 * bench/results, docs/performance.md). Every SEND carries MSG_DONTWAIT, so the kernel
 * finishes each one (all sent, part sent, EAGAIN or an error) while it is submitted: nothing
 * is in flight when ring_send() returns and the results are those send() would give, one
 * per socket, in order. The ring is per process (a forked worker makes its own) and used
 * only with the GIL held, so two threads never fill it at once.
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
} ring = {.fd = -1, .wanted = 1};

static void
ring_close(void)
{
    if (ring.fd < 0) {
        return;
    }
    if (ring.sqes != MAP_FAILED && ring.sqes != NULL) munmap(ring.sqes, ring.sqes_len);
    if (ring.cq_map != MAP_FAILED && ring.cq_map != NULL) munmap(ring.cq_map, ring.cq_map_len);
    if (ring.sq_map != MAP_FAILED && ring.sq_map != NULL) munmap(ring.sq_map, ring.sq_map_len);
    ring.sqes = NULL;
    ring.cq_map = ring.sq_map = NULL;
    close(ring.fd);
    ring.fd = -1;
}

/* Whether the kernel has IORING_OP_SEND (5.6 and later; the probe came with it). */
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
    ring.sq_map = mmap(NULL, ring.sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd,
                       IORING_OFF_SQ_RING);
    ring.cq_map = mmap(NULL, ring.cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd,
                       IORING_OFF_CQ_RING);
    ring.sqes = mmap(NULL, ring.sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd,
                     IORING_OFF_SQES);
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
        errno = EOPNOTSUPP;  /* a kernel older than 5.6: io_uring without IORING_OP_SEND */
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
    ring_close();  /* inherited across fork(): the parent's, never to be shared */
    if (ring_setup() < 0) {
        ring_give_up(errno, NULL);  /* e.g. seccomp or kernel.io_uring_disabled: EPERM */
        return 0;
    }
    return 1;
}

#define PENDING PY_SSIZE_T_MIN          /* a result not known yet */
#define CANCEL_TAG ((uint64_t)1 << 62)  /* user_data of a cancel request */

/* MSG_DONTWAIT on every send; only the tests take it away (ring_force_async), to make the
 * kernel park sends the way a kernel that ignores MSG_DONTWAIT would. */
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
        } else if (cqe->user_data < (uint64_t)n) {
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
 * would overtake it), and the event loop must never wait on a slow member. Every SEND
 * therefore carries MSG_DONTWAIT and completes while it is submitted. Should a kernel park
 * one instead (arm a poll and retry later), it is cancelled here: a cancelled send sent
 * nothing, so it counts as 0 bytes and the frame goes through the member's queue, and the
 * ring is given up for send() from then on. */
static Py_ssize_t
ring_send(const int *fds, Py_ssize_t n, const void *buf, size_t len, Py_ssize_t *results)
{
    unsigned tail = *ring.sq_tail, mask = *ring.sq_mask, taken, sends_done = 0, cancels_done = 0, cancels = 0;
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
    if (taken < (unsigned)n) {
        /* Not taken (interrupted by a signal, or refused): withdrawn, so they can never go
         * out later, and left to send(). */
        __atomic_store_n(ring.sq_tail, tail + taken, __ATOMIC_RELEASE);
        if (entered < 0 && taken == 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) {
            ring_give_up(errno, NULL);  /* e.g. io_uring_enter blocked by seccomp */
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
                sqe->addr = (uint64_t)i;  /* the user_data of the send to cancel */
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
             * so these members get -EIO (closed) rather than a duplicate. */
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
                results[i] = 0;  /* cancelled before it sent anything */
            }
        }
        ring_give_up(0, "this kernel parks MSG_DONTWAIT sends");
    }
    return (Py_ssize_t)taken;
}

#endif /* HAVE_RING */

/* One non-blocking send of buf to every fd: results[i] = bytes sent or -errno. */
static void
send_all(const int *fds, Py_ssize_t n, const void *buf, size_t len, Py_ssize_t *results)
{
    Py_ssize_t i = 0;
#ifdef HAVE_RING
    while (n - i > 1 && ring_ready()) {
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

static PyObject *
broadcast(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *seq, *out = NULL, **sockets = NULL, **websockets = NULL;
    Py_buffer frame;
    Py_ssize_t i, count, n = 0, *results = NULL;
    int *fds = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "broadcast(conns, frame)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &frame, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    seq = PySequence_Fast(args[0], "broadcast() needs a sequence of connections");
    if (seq == NULL) {
        PyBuffer_Release(&frame);
        return NULL;
    }
    count = PySequence_Fast_GET_SIZE(seq);
    out = PyList_New(0);
    sockets = PyMem_New(PyObject *, count ? count : 1);
    websockets = PyMem_New(PyObject *, count ? count : 1);
    fds = PyMem_New(int, count ? count : 1);
    results = PyMem_New(Py_ssize_t, count ? count : 1);
    if (out == NULL || sockets == NULL || websockets == NULL || fds == NULL || results == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    /* 1. who is ready: the others go back to Python at once */
    for (i = 0; i < count; i++) {
        PyObject *conn = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *ws = slot_get(conn, &c_ws);
        int fd = -1, ready;

        if (ws == NULL) {
            goto error;
        }
        ready = ready_to_send(conn, ws, &fd);
        if (ready < 0) {
            Py_DECREF(ws);
            goto error;
        }
        if (!ready) {
            Py_DECREF(ws);
            Py_INCREF(Py_None);
            if (leftover(out, conn, Py_None) < 0) {
                goto error;
            }
            continue;
        }
        sockets[n] = conn;  /* borrowed: seq holds it */
        websockets[n] = ws;  /* a reference of our own, released below */
        fds[n] = fd;
        n++;
    }
    /* 2. one non-blocking send each (no Python code runs in between) */
    send_all(fds, n, frame.buf, (size_t)frame.len, results);
    /* 3. count the complete ones, return the rest */
    for (i = 0; i < n; i++) {
        Py_ssize_t sent = results[i];
        if (sent == frame.len) {
            if (add_to_attr(websockets[i], &c_bytes_out, frame.len) < 0
                || add_to_attr(websockets[i], &c_messages_out, 1) < 0) {
                goto error;
            }
            continue;
        }
        if (sent == -EAGAIN || sent == -EWOULDBLOCK) {
            sent = 0;
        }
        if (leftover(out, sockets[i], PyLong_FromSsize_t(sent)) < 0) {
            goto error;
        }
    }
    for (i = 0; i < n; i++) {
        Py_DECREF(websockets[i]);
    }
    PyMem_Free(sockets);
    PyMem_Free(websockets);
    PyMem_Free(fds);
    PyMem_Free(results);
    Py_DECREF(seq);
    PyBuffer_Release(&frame);
    return out;

error:
    for (i = 0; i < n; i++) {
        Py_DECREF(websockets[i]);
    }
    PyMem_Free(sockets);
    PyMem_Free(websockets);
    PyMem_Free(fds);
    PyMem_Free(results);
    Py_XDECREF(out);
    Py_DECREF(seq);
    PyBuffer_Release(&frame);
    return NULL;
}

/* set_ring(enabled) -> str: broadcast() sends through io_uring (the default) or with send();
 * returns "io_uring", "send" (switched off) or "send (io_uring: <why not>)". */
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
    ring.failed_errno = 0;  /* asked again: try again */
    ring.failed_reason = NULL;
    if (ring_ready()) {
        return PyUnicode_FromString("io_uring");
    }
    return PyUnicode_FromFormat("send (io_uring: %s)",
                                ring.failed_reason ? ring.failed_reason : strerror(ring.failed_errno));
#else
    return PyUnicode_FromString(on ? "send (io_uring: not in this build)" : "send");
#endif
}

/* ring_force_async(on): tests only. Sends without MSG_DONTWAIT, so that the kernel parks a
 * send to a full socket as a kernel ignoring MSG_DONTWAIT would (ring_send cancels it). */
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

static PyMethodDef methods[] = {
    {"scan_data_frames", (PyCFunction)(void (*)(void))scan_data_frames, METH_FASTCALL,
     "scan_data_frames(data, limit, events) -> bytes consumed (see frames.Parser._feed_fast)"},
    {"encode_messages", encode_messages, METH_O,
     "encode_messages(messages) -> one unfragmented server frame per str/bytes message"},
    {"broadcast", (PyCFunction)(void (*)(void))broadcast, METH_FASTCALL,
     "broadcast(conns, frame) -> [(conn, None | sent | -errno)] left for Python (see the top of _speedups.c)"},
    {"set_ring", set_ring, METH_O,
     "set_ring(enabled) -> 'io_uring' | 'send' | 'send (io_uring: reason)': how broadcast() sends"},
    {"ring_owner", ring_owner, METH_NOARGS, "ring_owner() -> pid of the process whose io_uring is set up, 0 if none"},
    {"ring_force_async", ring_force_async, METH_O, "tests only: send without MSG_DONTWAIT (see ring_send)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "C loops for wsapp.protocol.frames.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    s_ws = PyUnicode_InternFromString("ws");
    s_writer = PyUnicode_InternFromString("_writer");
    s_queue = PyUnicode_InternFromString("_queue");
    s_batch_owner = PyUnicode_InternFromString("_batch_owner");
    s_closing = PyUnicode_InternFromString("_closing");
    s_state = PyUnicode_InternFromString("state");
    s_open = PyUnicode_InternFromString("OPEN");
    s_write_lock = PyUnicode_InternFromString("_write_lock");
    s_locked = PyUnicode_InternFromString("locked");
    s_fd = PyUnicode_InternFromString("fd");
    s_bytes_out = PyUnicode_InternFromString("bytes_out");
    s_messages_out = PyUnicode_InternFromString("messages_out");
    if (!s_ws || !s_writer || !s_queue || !s_batch_owner || !s_closing || !s_state || !s_open
        || !s_write_lock || !s_locked || !s_fd || !s_bytes_out || !s_messages_out) {
        return NULL;
    }
    return PyModule_Create(&module);
}
