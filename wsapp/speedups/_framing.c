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
 * Neither releases the GIL: they build Python objects as they go, and the work per call
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

static PyMethodDef methods[] = {
    {"scan_data_frames", (PyCFunction)(void (*)(void))scan_data_frames, METH_FASTCALL,
     "scan_data_frames(data, limit, events) -> bytes consumed by the complete small data\n"
     "frames appended to events (see wsapp.speedups.pure.scan_data_frames)"},
    {"encode_messages", encode_messages, METH_O,
     "encode_messages(messages) -> one unfragmented server frame per str/bytes message"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_framing", "RFC 6455 framing loops in C (wsapp.speedups).", 0,
    methods,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    return PyModuleDef_Init(&module);
}
