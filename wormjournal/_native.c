/* The hot loops of the write path in C: canonical JSON and canonical field bytes.
 *
 * Optional: wormjournal.native loads this module when it was built and falls back to the pure-Python
 * functions otherwise; the format vectors and a property test run both and require the same bytes.
 *
 * canonical_json(value, limit) returns the bytes Python's json module writes with sort_keys=True,
 * separators=(",", ":"), ensure_ascii=False, allow_nan=False (FORMAT.md 3), encoded as UTF-8, or None
 * when the value is not made of exact JSON types only (dict with str keys, list, tuple, str, int within
 * 64 bits, finite float, bool, None), is nested deeper than MAX_DEPTH, holds a str that is not valid
 * UTF-8, or writes out to more than `limit` bytes. None means "ask the Python path", which gives the
 * same bytes or the precise error; so this function never refuses anything itself.
 *
 * encode_fields(values, kinds) returns the canonical field bytes (FORMAT.md 2.2) of `values`, one field
 * per character of `kinds`: 'i' INT (u32be 8 || i64be), 's' STR (u32be len || UTF-8), 'b' BYTES
 * (u32be len || bytes); None is the NULL mark ff ff ff ff.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 128 /* FORMAT.md 3: the top-level value is level 1 */

typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    Py_ssize_t limit;
} Out;

/* 0: room for n more bytes; 1: over the limit (not handled); -1: MemoryError set. */
static int out_reserve(Out *o, Py_ssize_t n) {
    if (n > o->limit - o->len) {
        return 1;
    }
    if (o->len + n <= o->cap) {
        return 0;
    }
    Py_ssize_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n) {
        cap *= 2;
    }
    char *buf = PyMem_Realloc(o->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = buf;
    o->cap = cap;
    return 0;
}

static int out_write(Out *o, const char *data, Py_ssize_t n) {
    int r = out_reserve(o, n);
    if (r) {
        return r;
    }
    memcpy(o->buf + o->len, data, (size_t)n);
    o->len += n;
    return 0;
}

static int out_byte(Out *o, char c) {
    int r = out_reserve(o, 1);
    if (r) {
        return r;
    }
    o->buf[o->len++] = c;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* A JSON string as json's encoder writes it with ensure_ascii=False. */
static int write_str(Out *o, PyObject *s) {
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) { /* a lone surrogate: the Python path refuses it with its message */
        PyErr_Clear();
        return 1;
    }
    int r = out_byte(o, '"');
    if (r) {
        return r;
    }
    Py_ssize_t run = 0; /* bytes copied as they are, pending */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        if ((r = out_write(o, p + run, i - run))) {
            return r;
        }
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        Py_ssize_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = HEX[c >> 4];
            esc[5] = HEX[c & 0xf];
            len = 6;
        }
        if ((r = out_write(o, esc, len))) {
            return r;
        }
    }
    if ((r = out_write(o, p + run, n - run))) {
        return r;
    }
    return out_byte(o, '"');
}

static int write_value(Out *o, PyObject *v, int depth);

static int write_dict(Out *o, PyObject *d, int depth) {
    Py_ssize_t n = PyDict_GET_SIZE(d);
    if (n == 0) {
        return out_write(o, "{}", 2);
    }
    PyObject *keys = PyDict_Keys(d);
    if (keys == NULL) {
        return -1;
    }
    int r = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(keys, i))) { /* a str subclass or no str: the Python path */
            r = 1;
            goto done;
        }
    }
    /* exact str keys compare by code point, without running Python code */
    if (PyList_Sort(keys) < 0) {
        r = -1;
        goto done;
    }
    if ((r = out_byte(o, '{'))) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (i && (r = out_byte(o, ','))) {
            goto done;
        }
        if ((r = write_str(o, key)) || (r = out_byte(o, ':'))) {
            goto done;
        }
        PyObject *value = PyDict_GetItemWithError(d, key); /* borrowed; the dict is not changed meanwhile */
        if (value == NULL) {
            r = PyErr_Occurred() ? -1 : 1;
            goto done;
        }
        if ((r = write_value(o, value, depth + 1))) {
            goto done;
        }
    }
    r = out_byte(o, '}');
done:
    Py_DECREF(keys);
    return r;
}

static int write_array(Out *o, PyObject *seq, int depth) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int r = out_byte(o, '[');
    for (Py_ssize_t i = 0; i < n && !r; i++) {
        if (i) {
            r = out_byte(o, ',');
        }
        if (!r) {
            r = write_value(o, items[i], depth + 1);
        }
    }
    return r ? r : out_byte(o, ']');
}

static int write_value(Out *o, PyObject *v, int depth) {
    if (v == Py_None) {
        return out_write(o, "null", 4);
    }
    if (v == Py_True) {
        return out_write(o, "true", 4);
    }
    if (v == Py_False) {
        return out_write(o, "false", 5);
    }
    if (PyUnicode_CheckExact(v)) {
        return write_str(o, v);
    }
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) {
            return 1; /* beyond 64 bits: the Python path checks and writes it */
        }
        if (x == -1 && PyErr_Occurred()) {
            return -1;
        }
        char text[32];
        int len = snprintf(text, sizeof text, "%lld", x);
        return out_write(o, text, len);
    }
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        if (!isfinite(x)) {
            return 1; /* NaN and infinities are refused by the Python path */
        }
        /* float.__repr__, which json uses: the shortest repr that round-trips */
        char *text = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) {
            return -1;
        }
        int r = out_write(o, text, (Py_ssize_t)strlen(text));
        PyMem_Free(text);
        return r;
    }
    if (PyDict_CheckExact(v) || PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        if (depth > MAX_DEPTH) {
            return 1; /* too deep, or a value that holds itself: the Python path refuses it */
        }
        return PyDict_CheckExact(v) ? write_dict(o, v, depth) : write_array(o, v, depth);
    }
    return 1; /* another type, or a subclass: the Python path */
}

static PyObject *canonical_json(PyObject *self, PyObject *args) {
    PyObject *value;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "On:canonical_json", &value, &limit)) {
        return NULL;
    }
    Out o = {NULL, 0, 0, limit < 0 ? 0 : limit};
    int r = write_value(&o, value, 1);
    PyObject *result;
    if (r < 0) {
        result = NULL;
    } else if (r > 0) {
        result = Py_NewRef(Py_None);
    } else {
        result = PyBytes_FromStringAndSize(o.buf ? o.buf : "", o.len);
    }
    PyMem_Free(o.buf);
    return result;
}

static void put_u32(char *p, uint32_t x) {
    p[0] = (char)(x >> 24);
    p[1] = (char)(x >> 16);
    p[2] = (char)(x >> 8);
    p[3] = (char)x;
}

static PyObject *encode_fields(PyObject *self, PyObject *args) {
    PyObject *values, *kinds_obj;
    if (!PyArg_ParseTuple(args, "OO!:encode_fields", &values, &PyBytes_Type, &kinds_obj)) {
        return NULL;
    }
    const char *kinds = PyBytes_AS_STRING(kinds_obj);
    Py_ssize_t nk = PyBytes_GET_SIZE(kinds_obj);
    PyObject *seq = PySequence_Fast(values, "encode_fields needs a sequence of values");
    if (seq == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer *views = NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n != nk) {
        PyErr_Format(PyExc_ValueError, "expected %zd field values, got %zd", nk, n);
        goto done;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    views = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* first pass: sizes (and the UTF-8 of each str, cached by the str itself) */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = items[i];
        if (v == Py_None) {
            total += 4;
            continue;
        }
        switch (kinds[i]) {
        case 'i':
            if (!PyLong_Check(v)) {
                PyErr_Format(PyExc_TypeError, "field %zd: an INT field needs an int", i);
                goto done;
            }
            total += 12;
            break;
        case 's': {
            Py_ssize_t len;
            if (!PyUnicode_Check(v)) {
                PyErr_Format(PyExc_TypeError, "field %zd: a STR field needs a str", i);
                goto done;
            }
            if (PyUnicode_AsUTF8AndSize(v, &len) == NULL) {
                goto done;
            }
            total += 4 + len;
            break;
        }
        case 'b':
            if (PyObject_GetBuffer(v, &views[i], PyBUF_SIMPLE) < 0) {
                goto done;
            }
            total += 4 + views[i].len;
            break;
        default:
            PyErr_Format(PyExc_ValueError, "unknown field kind %c", kinds[i]);
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        goto done;
    }
    char *p = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = items[i];
        if (v == Py_None) {
            memset(p, 0xff, 4);
            p += 4;
            continue;
        }
        if (kinds[i] == 'i') {
            long long x = PyLong_AsLongLong(v);
            if (x == -1 && PyErr_Occurred()) {
                Py_CLEAR(result);
                goto done;
            }
            uint64_t u = (uint64_t)x;
            put_u32(p, 8);
            put_u32(p + 4, (uint32_t)(u >> 32));
            put_u32(p + 8, (uint32_t)u);
            p += 12;
        } else if (kinds[i] == 's') {
            Py_ssize_t len;
            const char *s = PyUnicode_AsUTF8AndSize(v, &len);
            if (len > 0xfffffffe) {
                PyErr_SetString(PyExc_OverflowError, "a field is over 4 GiB");
                Py_CLEAR(result);
                goto done;
            }
            put_u32(p, (uint32_t)len);
            memcpy(p + 4, s, (size_t)len);
            p += 4 + len;
        } else {
            Py_ssize_t len = views[i].len;
            if (len > 0xfffffffe) {
                PyErr_SetString(PyExc_OverflowError, "a field is over 4 GiB");
                Py_CLEAR(result);
                goto done;
            }
            put_u32(p, (uint32_t)len);
            memcpy(p + 4, views[i].buf, (size_t)len);
            p += 4 + len;
        }
    }
done:
    if (views != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            if (views[i].obj != NULL) {
                PyBuffer_Release(&views[i]);
            }
        }
        PyMem_Free(views);
    }
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"canonical_json", canonical_json, METH_VARARGS,
     "canonical_json(value, limit) -> bytes | None: the canonical JSON of value, or None (ask the Python path)"},
    {"encode_fields", encode_fields, METH_VARARGS,
     "encode_fields(values, kinds) -> bytes: the canonical field bytes of values (kinds: i, s, b per field)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wormjournal._native", "The write path's hot loops in C (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
