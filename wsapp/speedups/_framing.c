/* wsapp.speedups._framing: the two per-message framing loops in C (optional).
 *
 * Same functions, arguments, results and errors as wsapp/speedups/pure.py, which the tests
 * compare against this file on edge cases and on hypothesis-generated input.
 *
 * scan_data_frames(data, limit, events) -> int
 *     Appends to the list `events` every leading frame of `data` that is a complete,
 *     unfragmented, masked text or binary frame with a 7- or 16-bit length (RFC 6455 5.2)
 *     and a payload of at most `limit` bytes: unmasked (5.3), text decoded as strict UTF-8
 *     (8.1) into str, binary as bytes. Returns how many bytes of `data` those frames took.
 *     It stops, without raising, at the first frame that is anything else (control frame,
 *     fragment, 64-bit length, incomplete, over `limit`, unmasked, text that is not valid
 *     UTF-8): the general parser then applies every rule to the rest, and reports errors.
 *
 * encode_messages(messages) -> list[bytes]
 *     One unfragmented, unmasked server frame per message (RFC 6455 5.2, 5.6): str as a text
 *     frame of its UTF-8 encoding, any other bytes-like object as a binary frame.
 *
 * Payload(size, mask, text=False): one large payload assembled in place
 *     `write(data, start, count)` unmasks data[start:start + count] straight into the
 *     message's own object at the current offset (the mask continues where the last piece
 *     stopped, RFC 6455 5.3); `take()` hands that object out once it is full. A message
 *     read in many pieces is then one allocation and one copy, instead of a part per piece
 *     and a join (and no large short-lived buffers for the allocator to map and unmap).
 *     Text is written into an ASCII str while every byte is ASCII (`ascii`: valid UTF-8,
 *     nothing to decode); after the first other byte the caller validates what comes
 *     (`written(start)`) and `take()` decodes. Nothing is visible to Python before `take()`.
 *
 *     `payload_ahead()`: bytes all live Payloads have allocated and not received yet.
 *
 * Utf8(text): a str's UTF-8 bytes as a read-only buffer, to send without a copy.
 *
 * None releases the GIL: they build Python objects as they go, and the work per call
 * is a few microseconds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* dst[i] = src[i] ^ mask[i % 4], 8 bytes at a time (RFC 6455 5.3). */
static void
unmask_into(char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *mask)
{
    uint32_t m32;
    uint64_t m64, v;
    Py_ssize_t i = 0;

    memcpy(&m32, mask, 4);
    m64 = ((uint64_t)m32 << 32) | m32; /* the mask bytes twice, in memory order */
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, src + i, 8);
        v ^= m64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++) {
        dst[i] = (char)(src[i] ^ mask[i & 3]);
    }
}

/* Text frames up to this size are unmasked on the stack before decoding. */
#define SMALL_TEXT 512

static PyObject *
scan_data_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t limit, n, pos = 0;
    const unsigned char *d;
    PyObject *events;
    char small[SMALL_TEXT];

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
    while (n - pos >= 6) { /* the smallest masked frame: 2 header bytes and a 4-byte key */
        unsigned char b0 = d[pos], b1 = d[pos + 1];
        Py_ssize_t length = b1 & 0x7F, start;
        const unsigned char *mask;
        PyObject *item;

        if (b0 != 0x81 && b0 != 0x82) { /* FIN, no RSV bits, text or binary */
            break;
        }
        if (b1 < 0x80 || length == 127) { /* not masked, or a 64-bit length */
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
                    PyErr_Clear(); /* the general parser reports it (1007) */
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

/* The frame for one message: header (2, 4 or 10 bytes) then the payload. */
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
        payload = PyUnicode_AsUTF8AndSize(message, &length); /* refuses lone surrogates */
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

/* --- Payload ------------------------------------------------------------------------ */

/* Bytes every live Payload has allocated but not received yet: memory a peer holds with
 * a frame header alone, which the parser keeps under a process-wide budget. */
static Py_ssize_t payload_ahead_bytes = 0;

typedef struct {
    PyObject_HEAD
    PyObject *obj;  /* the message being filled (bytes, or an ASCII str); NULL once taken */
    char *buf;      /* its storage */
    Py_ssize_t size;
    Py_ssize_t filled;
    int text;
    int ascii;      /* text: every byte so far is ASCII, so `obj` is already the str */
    unsigned char mask[4];
} PayloadObject;

static PyObject *
payload_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t size;
    Py_buffer mask;
    int text = 0;
    PayloadObject *self;

    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Payload() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "ny*|p:Payload", &size, &mask, &text)) {
        return NULL;
    }
    if (size < 0 || mask.len != 4) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "Payload(size >= 0, 4-byte mask)");
        return NULL;
    }
    self = (PayloadObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        PyBuffer_Release(&mask);
        return NULL;
    }
    memcpy(self->mask, mask.buf, 4);
    PyBuffer_Release(&mask);
    self->size = size;
    self->filled = 0;
    self->text = text;
    self->ascii = text;
    /* Text starts as an ASCII str (one byte per character, the common case for JSON):
     * while every byte is ASCII it is its own valid UTF-8 and the str needs no decoding. */
    self->obj = text ? PyUnicode_New(size, 127) : PyBytes_FromStringAndSize(NULL, size);
    if (self->obj == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->buf = text ? (char *)PyUnicode_DATA(self->obj) : PyBytes_AS_STRING(self->obj);
    payload_ahead_bytes += size;
    return (PyObject *)self;
}

static void
payload_dealloc(PayloadObject *self)
{
    if (self->obj != NULL) {
        payload_ahead_bytes -= self->size - self->filled;
    }
    Py_XDECREF(self->obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
all_ascii(const char *p, Py_ssize_t n)
{
    uint64_t acc = 0, v;
    Py_ssize_t i = 0;
    unsigned char tail = 0;

    for (; i + 8 <= n; i += 8) {
        memcpy(&v, p + i, 8);
        acc |= v;
    }
    for (; i < n; i++) {
        tail |= (unsigned char)p[i];
    }
    return ((acc & 0x8080808080808080ULL) | (tail & 0x80)) == 0;
}

static PyObject *
payload_write(PayloadObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start, count, i;
    unsigned char mask[4];

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "write(data, start, count)");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    count = PyLong_AsSsize_t(args[2]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (self->obj == NULL || start < 0 || count < 0 || start > view.len
        || count > view.len - start || count > self->size - self->filled) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "write() outside the data or past the payload");
        return NULL;
    }
    for (i = 0; i < 4; i++) {
        mask[i] = self->mask[(self->filled + i) & 3];
    }
    unmask_into(self->buf + self->filled, (const unsigned char *)view.buf + start, count, mask);
    PyBuffer_Release(&view);
    if (self->ascii && !all_ascii(self->buf + self->filled, count)) {
        self->ascii = 0; /* from here on the caller validates UTF-8 (see `written`) */
    }
    self->filled += count;
    payload_ahead_bytes -= count;
    Py_RETURN_NONE;
}

/* The message: bytes, or for text the str (decoded now unless it was all ASCII). */
static PyObject *
payload_take(PayloadObject *self, PyObject *unused)
{
    PyObject *out;

    if (self->obj == NULL || self->filled != self->size) {
        PyErr_SetString(PyExc_ValueError, "take() before the payload is complete, or twice");
        return NULL;
    }
    if (self->text && !self->ascii) {
        out = PyUnicode_DecodeUTF8(self->buf, self->size, "strict");
        if (out == NULL) {
            return NULL;
        }
        Py_CLEAR(self->obj);
        return out;
    }
    out = self->obj;
    self->obj = NULL;
    return out;
}

/* Payload bytes from `start` to what is written so far, to validate text that is not all
 * ASCII as it arrives: a read-only view of binary (it keeps the bytes alive), a copy of
 * text (its storage is a str's). */
static PyObject *
payload_written(PayloadObject *self, PyObject *arg)
{
    Py_ssize_t start = PyLong_AsSsize_t(arg);
    PyObject *full, *stop, *slice, *out;

    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->obj == NULL || start < 0 || start > self->filled) {
        PyErr_SetString(PyExc_ValueError, "written(start) outside what is written");
        return NULL;
    }
    if (self->text) {
        return PyBytes_FromStringAndSize(self->buf + start, self->filled - start);
    }
    full = PyMemoryView_FromObject(self->obj);
    if (full == NULL) {
        return NULL;
    }
    stop = PyLong_FromSsize_t(self->filled);
    slice = stop == NULL ? NULL : PySlice_New(arg, stop, NULL);
    out = slice == NULL ? NULL : PyObject_GetItem(full, slice);
    Py_XDECREF(slice);
    Py_XDECREF(stop);
    Py_DECREF(full);
    return out;
}

static PyObject *
payload_filled(PayloadObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->filled);
}

static PyObject *
payload_ascii(PayloadObject *self, void *closure)
{
    return PyBool_FromLong(self->ascii);
}

static PyMethodDef payload_methods[] = {
    {"write", (PyCFunction)(void (*)(void))payload_write, METH_FASTCALL,
     "write(data, start, count): unmask data[start:start + count] into the payload"},
    {"take", (PyCFunction)payload_take, METH_NOARGS, "take() -> bytes (or str), once complete"},
    {"written", (PyCFunction)payload_written, METH_O,
     "written(start) -> the payload bytes from start to what is written"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef payload_getset[] = {
    {"filled", (getter)payload_filled, NULL, "payload bytes written so far", NULL},
    {"ascii", (getter)payload_ascii, NULL, "text whose every byte so far is ASCII", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PayloadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsapp.speedups._framing.Payload",
    .tp_basicsize = sizeof(PayloadObject),
    .tp_dealloc = (destructor)payload_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Payload(size, mask, text=False): a large payload unmasked in place (see the file header)",
    .tp_methods = payload_methods,
    .tp_getset = payload_getset,
    .tp_new = payload_new,
};

/* --- Utf8 -------------------------------------------------------------------------- */

/* Utf8(text): the UTF-8 bytes of a str as a read-only buffer, without a copy when the
 * str is ASCII (CPython keeps those bytes as the str itself) and otherwise the UTF-8 copy
 * CPython caches on the str; the object keeps the str alive while a send uses them. */
typedef struct {
    PyObject_HEAD
    PyObject *text;
    const char *data;
    Py_ssize_t size;
} Utf8Object;

static PyObject *
utf8_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *text;
    Utf8Object *self;

    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Utf8() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "U:Utf8", &text)) {
        return NULL;
    }
    self = (Utf8Object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->data = PyUnicode_AsUTF8AndSize(text, &self->size); /* refuses lone surrogates */
    if (self->data == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    Py_INCREF(text);
    self->text = text;
    return (PyObject *)self;
}

static void
utf8_dealloc(Utf8Object *self)
{
    Py_XDECREF(self->text);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
utf8_getbuffer(Utf8Object *self, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)self, (void *)self->data, self->size, 1, flags);
}

static Py_ssize_t
utf8_length(Utf8Object *self)
{
    return self->size;
}

static PyBufferProcs utf8_as_buffer = {(getbufferproc)utf8_getbuffer, NULL};
static PySequenceMethods utf8_as_sequence = {.sq_length = (lenfunc)utf8_length};

static PyTypeObject Utf8Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsapp.speedups._framing.Utf8",
    .tp_basicsize = sizeof(Utf8Object),
    .tp_dealloc = (destructor)utf8_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Utf8(text): the UTF-8 bytes of a str as a read-only buffer (see above)",
    .tp_as_buffer = &utf8_as_buffer,
    .tp_as_sequence = &utf8_as_sequence,
    .tp_new = utf8_new,
};

static int
framing_exec(PyObject *mod)
{
    if (PyType_Ready(&Utf8Type) < 0) {
        return -1;
    }
    Py_INCREF(&Utf8Type);
    if (PyModule_AddObject(mod, "Utf8", (PyObject *)&Utf8Type) < 0) {
        Py_DECREF(&Utf8Type);
        return -1;
    }
    if (PyType_Ready(&PayloadType) < 0) {
        return -1;
    }
    Py_INCREF(&PayloadType);
    if (PyModule_AddObject(mod, "Payload", (PyObject *)&PayloadType) < 0) {
        Py_DECREF(&PayloadType);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, framing_exec},
    {0, NULL},
};

static PyObject *
payload_ahead(PyObject *module, PyObject *unused)
{
    return PyLong_FromSsize_t(payload_ahead_bytes);
}

static PyMethodDef methods[] = {
    {"payload_ahead", payload_ahead, METH_NOARGS,
     "payload_ahead() -> bytes live Payloads allocated and have not received yet"},
    {"scan_data_frames", (PyCFunction)(void (*)(void))scan_data_frames, METH_FASTCALL,
     "scan_data_frames(data, limit, events) -> bytes consumed by the complete small data\n"
     "frames appended to events (see wsapp.speedups.pure.scan_data_frames)"},
    {"encode_messages", encode_messages, METH_O,
     "encode_messages(messages) -> one unfragmented server frame per str/bytes message"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_framing", "RFC 6455 framing loops in C (wsapp.speedups).", 0,
    methods, slots,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    return PyModuleDef_Init(&module);
}
