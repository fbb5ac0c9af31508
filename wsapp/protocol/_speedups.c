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
 *     replaces; the tests run both.
 *
 * Built by `python -m wsapp.protocol.build_speedups` (make run / make test); without it
 * the pure Python versions run, and the tests check that both give identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

/* 1 if the attribute is truthy, 0 if not, -1 on error. */
static int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
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
attr_none(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return value == Py_None;
}

static int
add_to_attr(PyObject *obj, PyObject *name, Py_ssize_t amount)
{
    PyObject *value = PyObject_GetAttr(obj, name), *delta, *sum;
    int result;
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
    result = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return result;
}

/* 1 ready, 0 not ready, -1 error; on 1, *fd is the socket to write. */
static int
ready_to_send(PyObject *conn, PyObject *ws, int *fd)
{
    PyObject *value, *lock;
    int r;

    if ((r = attr_none(conn, s_writer)) != 1) {
        return r;
    }
    if ((r = attr_true(conn, s_queue)) != 0) {
        return r < 0 ? r : 0;
    }
    if ((r = attr_none(conn, s_batch_owner)) != 1) {
        return r;
    }
    if ((r = attr_true(conn, s_closing)) != 0) {
        return r < 0 ? r : 0;
    }
    value = PyObject_GetAttr(ws, s_state);
    if (value == NULL) {
        return -1;
    }
    r = PyObject_RichCompareBool(value, s_open, Py_EQ);
    Py_DECREF(value);
    if (r != 1) {
        return r;
    }
    lock = PyObject_GetAttr(ws, s_write_lock);
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
    value = PyObject_GetAttr(ws, s_fd);
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

static PyObject *
broadcast(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *seq, *out;
    Py_buffer frame;
    Py_ssize_t i, count;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "broadcast(conns, frame)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &frame, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    seq = PySequence_Fast(args[0], "broadcast() needs a sequence of connections");
    out = seq != NULL ? PyList_New(0) : NULL;
    if (out == NULL) {
        Py_XDECREF(seq);
        PyBuffer_Release(&frame);
        return NULL;
    }
    count = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < count; i++) {
        PyObject *conn = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *ws = PyObject_GetAttr(conn, s_ws);
        int fd = -1, ready;
        ssize_t sent;

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
        do {
            sent = send(fd, frame.buf, (size_t)frame.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        if (sent == frame.len) {
            if (add_to_attr(ws, s_bytes_out, frame.len) < 0 || add_to_attr(ws, s_messages_out, 1) < 0) {
                Py_DECREF(ws);
                goto error;
            }
            Py_DECREF(ws);
            continue;
        }
        Py_DECREF(ws);
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            sent = 0;
        }
        if (leftover(out, conn, PyLong_FromSsize_t(sent < 0 ? -(Py_ssize_t)errno : (Py_ssize_t)sent)) < 0) {
            goto error;
        }
    }
    Py_DECREF(seq);
    PyBuffer_Release(&frame);
    return out;

error:
    Py_DECREF(out);
    Py_DECREF(seq);
    PyBuffer_Release(&frame);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan_data_frames", (PyCFunction)(void (*)(void))scan_data_frames, METH_FASTCALL,
     "scan_data_frames(data, limit, events) -> bytes consumed (see frames.Parser._feed_fast)"},
    {"encode_messages", encode_messages, METH_O,
     "encode_messages(messages) -> one unfragmented server frame per str/bytes message"},
    {"broadcast", (PyCFunction)(void (*)(void))broadcast, METH_FASTCALL,
     "broadcast(conns, frame) -> [(conn, None | sent | -errno)] left for Python (see the top of _speedups.c)"},
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
