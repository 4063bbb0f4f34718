/* The hot loops of the write path in C: an event's fields, canonical JSON, canonical field bytes, WAL frames.
 *
 * Optional: wormjournal.native loads this module when it was built and falls back to the pure-Python
 * functions otherwise; the format vectors and a property test run both and require the same bytes.
 *
 * canonical_json(value, limit) returns the bytes Python's json module writes with sort_keys=True,
 * separators=(",", ":"), ensure_ascii=False, allow_nan=False (FORMAT.md 3), encoded as UTF-8, or None
 * when the value is not made of exact JSON types only (dict with str keys, list, tuple, str, int within
 * 64 bits, finite float, bool, None), is nested deeper than MAX_DEPTH, holds a str that is not valid
 * UTF-8. None means "ask the Python path", which gives the same bytes or the precise error. It returns
 * False when the value writes out to more than `limit` bytes before anything it cannot handle: the caller
 * refuses it then, without the Python path's walk of up to `limit` values.
 *
 * encode_fields(values, kinds) returns the canonical field bytes (FORMAT.md 2.2) of `values`, one field
 * per character of `kinds`: 'i' INT (u32be 8 || i64be), 's' STR (u32be len || UTF-8), 'b' BYTES
 * (u32be len || bytes); None is the NULL mark ff ff ff ff.
 *
 * check_fields(fields, spec) checks an event's fields in the common case (events.stored_values; None hands
 * anything else to the Python path), with a new UUIDv7 (uuid7: random bits from getrandom, pooled, the pool
 * forgotten in a forked child) for an event id not given.
 *
 * chain_frame(...) chains the records of a batch and frames them for the WAL (stages.Chain and stages.Frame).
 *
 * event_hashes(n, tag, columns) and merkle_blocks(data, block) are the verifier's: every event hash of a batch of
 * a segment's rows from the Arrow buffers of its columns, and a segment's block roots and Merkle root from its
 * packed event hashes, each in one call.
 *
 * decode_chunk(...) decodes a column chunk of a segment (plain version 1 pages, zstd through the system's libzstd)
 * straight into Arrow buffers the caller gives (segments/pages.decode_plain); anything else is pyarrow's to read.
 *
 * Bulk SHA-256 (sha256_rows, merkle_leaves, block_roots, chain_frame, hmac_states, event_hashes, merkle_blocks)
 * calls OpenSSL's SHA256_Init/Update/Final, found at run time in the libcrypto that Python's own hashlib is linked
 * with (use_libcrypto): no header or library is needed to build, and without it these functions are not offered
 * (the Python paths stay).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/random.h>
#include <time.h>
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

/* 0: room for n more bytes; 2: over the limit (the value is refused whatever else it holds); -1: MemoryError
 * set. 1, from the writers below: not handled here (the Python path). */
static int out_reserve(Out *o, Py_ssize_t n) {
    if (n > o->limit - o->len) {
        return 2;
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
    } else if (r == 2) {
        result = Py_NewRef(Py_False); /* over the limit: refused at once (a shared subtree can be huge) */
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

/* decode_fields(data, kinds, nullable) -> (values tuple, bytes used) | None: the fields encode_fields wrote,
   parsed (nullable: b"1" or b"0" per field). None for anything the Python path refuses, which then says why. */
static PyObject *decode_fields(PyObject *self, PyObject *args) {
    Py_buffer data;
    PyObject *kinds_obj, *nullable_obj;
    if (!PyArg_ParseTuple(args, "y*O!O!:decode_fields", &data, &PyBytes_Type, &kinds_obj, &PyBytes_Type,
                          &nullable_obj)) {
        return NULL;
    }
    const unsigned char *p = data.buf;
    Py_ssize_t len = data.len, pos = 0;
    const char *kinds = PyBytes_AS_STRING(kinds_obj);
    const char *nullable = PyBytes_AS_STRING(nullable_obj);
    Py_ssize_t n = PyBytes_GET_SIZE(kinds_obj);
    PyObject *values = NULL;
    if (PyBytes_GET_SIZE(nullable_obj) != n) {
        PyErr_SetString(PyExc_ValueError, "decode_fields: kinds and nullable differ in length");
        goto fail;
    }
    values = PyTuple_New(n);
    if (values == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (len - pos < 4) {
            goto python;
        }
        uint32_t length = ((uint32_t)p[pos] << 24) | ((uint32_t)p[pos + 1] << 16) | ((uint32_t)p[pos + 2] << 8) |
                          (uint32_t)p[pos + 3];
        pos += 4;
        PyObject *v;
        if (length == 0xFFFFFFFFu) {
            if (nullable[i] != '1') {
                goto python;
            }
            v = Py_NewRef(Py_None);
        } else {
            if ((Py_ssize_t)length > len - pos) {
                goto python;
            }
            const unsigned char *raw = p + pos;
            switch (kinds[i]) {
            case 'i': {
                if (length != 8) {
                    goto python;
                }
                uint64_t x = 0;
                for (int k = 0; k < 8; k++) {
                    x = (x << 8) | raw[k];
                }
                v = PyLong_FromLongLong((long long)x);
                break;
            }
            case 's':
                v = PyUnicode_DecodeUTF8((const char *)raw, (Py_ssize_t)length, "strict");
                if (v == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    PyErr_Clear();
                    goto python;
                }
                break;
            default:
                v = PyBytes_FromStringAndSize((const char *)raw, (Py_ssize_t)length);
            }
            if (v == NULL) {
                goto fail;
            }
            pos += length;
        }
        PyTuple_SET_ITEM(values, i, v);
    }
    PyBuffer_Release(&data);
    return Py_BuildValue("(Nn)", values, pos);
python:
    Py_XDECREF(values);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(values);
    PyBuffer_Release(&data);
    return NULL;
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

/* -- SHA-256 in bulk, through the libcrypto that hashlib loaded ------------------------------------------ */

/* OpenSSL's SHA256_Init/Update/Final (in libcrypto 1.1 and 3; deprecated in 3 but exported): the direct
   functions, without the algorithm fetch that SHA256() and EVP do on each call. The context is opaque here: a
   buffer larger than OpenSSL's SHA256_CTX (112 bytes), aligned. */
typedef int (*sha_init_fn)(void *);
typedef int (*sha_update_fn)(void *, const void *, size_t);
typedef int (*sha_final_fn)(unsigned char *, void *);
static sha_init_fn sha_init = NULL;
static sha_update_fn sha_update = NULL;
static sha_final_fn sha_final = NULL;
typedef union {
    unsigned char bytes[256];
    long double align;
} sha_ctx;

static int SHA256_ON = 0;

static void SHA256_(const unsigned char *d, size_t n, unsigned char *md) {
    sha_ctx ctx;
    sha_init(&ctx);
    sha_update(&ctx, d, n);
    sha_final(md, &ctx);
}

static PyObject *use_libcrypto(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s:use_libcrypto", &path)) {
        return NULL;
    }
    /* the module is loaded already (hashlib imported it); its dependencies are searched too */
    void *handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    if (handle != NULL) {
        sha_init = (sha_init_fn)dlsym(handle, "SHA256_Init");
        sha_update = (sha_update_fn)dlsym(handle, "SHA256_Update");
        sha_final = (sha_final_fn)dlsym(handle, "SHA256_Final");
        SHA256_ON = sha_init != NULL && sha_update != NULL && sha_final != NULL;
    }
    if (SHA256_ON) { /* a known answer first: SHA-256("abc") */
        static const unsigned char abc[32] = {
            0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
            0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
        unsigned char md[32];
        SHA256_((const unsigned char *)"abc", 3, md);
        SHA256_ON = memcmp(md, abc, 32) == 0;
    }
    return PyBool_FromLong(SHA256_ON);
}

static int need_sha(void) {
    if (!SHA256_ON) {
        PyErr_SetString(PyExc_RuntimeError, "no SHA-256 from libcrypto (use_libcrypto)");
        return -1;
    }
    return 0;
}

/* sha256_rows(data, offsets) -> bytes: SHA-256 of data[offsets[i]:offsets[i+1]] for each i, 32 bytes each.
   offsets: n + 1 little-endian int32 (an Arrow binary array's). */
static PyObject *sha256_rows(PyObject *self, PyObject *args) {
    Py_buffer data, offs;
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "y*y*:sha256_rows", &data, &offs)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = offs.len / 4 - 1;
    if (offs.len % 4 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "offsets are not n + 1 int32");
        goto done;
    }
    const int32_t *o = (const int32_t *)offs.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (o[i] < 0 || o[i] > o[i + 1] || o[i + 1] > data.len) {
            PyErr_SetString(PyExc_ValueError, "offsets out of range");
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, 32 * n);
    if (result == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *d = (const unsigned char *)data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        SHA256_(d + o[i], (size_t)(o[i + 1] - o[i]), out + 32 * i);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offs);
    return result;
}

/* The RFC 6962 root over n leaf hashes (32 bytes each, at in), bottom-up pairing with an odd last node
   promoted: the same tree as the split at the largest power of two below n. Writes 32 bytes at out. */
static void mth(const unsigned char *in, Py_ssize_t n, unsigned char *work, unsigned char *out) {
    if (n == 0) {
        SHA256_((const unsigned char *)"", 0, out);
        return;
    }
    memcpy(work, in, (size_t)(32 * n));
    unsigned char node[65];
    node[0] = 0x01;
    while (n > 1) {
        Py_ssize_t m = 0;
        for (Py_ssize_t i = 0; i + 1 < n; i += 2) {
            memcpy(node + 1, work + 32 * i, 64);
            SHA256_(node, 65, work + 32 * m++);
        }
        if (n % 2) {
            memmove(work + 32 * m++, work + 32 * (n - 1), 32);
        }
        n = m;
    }
    memcpy(out, work, 32);
}

/* merkle_leaves(hashes) -> bytes: SHA-256(0x00 || h) of each 32-byte h of hashes (n * 32 bytes). */
static PyObject *merkle_leaves(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "y*:merkle_leaves", &in)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (in.len % 32) {
        PyErr_SetString(PyExc_ValueError, "not whole 32-byte hashes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, in.len);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        const unsigned char *h = (const unsigned char *)in.buf;
        Py_ssize_t n = in.len / 32;
        Py_BEGIN_ALLOW_THREADS
        unsigned char leaf[33];
        leaf[0] = 0x00;
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(leaf + 1, h + 32 * i, 32);
            SHA256_(leaf, 33, out + 32 * i);
        }
        Py_END_ALLOW_THREADS
    }
done:
    PyBuffer_Release(&in);
    return result;
}

/* block_roots(leaves, block) -> bytes: the root of each run of `block` leaf hashes (the last may be shorter). */
static PyObject *block_roots(PyObject *self, PyObject *args) {
    Py_buffer in;
    Py_ssize_t block;
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "y*n:block_roots", &in, &block)) {
        return NULL;
    }
    PyObject *result = NULL;
    unsigned char *work = NULL;
    if (in.len % 32 || block < 1 || (block & (block - 1))) {
        PyErr_SetString(PyExc_ValueError, "not whole 32-byte hashes, or block not a power of two");
        goto done;
    }
    Py_ssize_t n = in.len / 32;
    Py_ssize_t runs = (n + block - 1) / block;
    work = PyMem_Malloc((size_t)(32 * (block < n ? block : (n ? n : 1))));
    result = work == NULL ? PyErr_NoMemory() : PyBytes_FromStringAndSize(NULL, 32 * runs);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        const unsigned char *h = (const unsigned char *)in.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < runs; r++) {
            Py_ssize_t k = n - r * block < block ? n - r * block : block;
            mth(h + 32 * r * block, k, work, out + 32 * r);
        }
        Py_END_ALLOW_THREADS
    }
done:
    PyMem_Free(work);
    PyBuffer_Release(&in);
    return result;
}

/* -- event ids: UUIDv7 (RFC 9562) ------------------------------------------------------------------------ */

/* Random bytes from getrandom(2), read 4 KiB at a time; the GIL guards the pool. A child process after fork
   starts a new pool (pthread_atfork), or it would make the ids its parent makes next. */
static unsigned char POOL[4096];
static size_t POOL_POS = sizeof(POOL);

static void pool_forget(void) { POOL_POS = sizeof(POOL); }

static int random_bytes(unsigned char *out, size_t n) {
    if (POOL_POS + n > sizeof(POOL)) {
        size_t got = 0;
        while (got < sizeof(POOL)) {
            ssize_t r = getrandom(POOL + got, sizeof(POOL) - got, 0);
            if (r < 0) {
                if (errno == EINTR) {
                    continue;
                }
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
            got += (size_t)r;
        }
        POOL_POS = 0;
    }
    memcpy(out, POOL + POOL_POS, n);
    POOL_POS += n;
    return 0;
}

/* A UUIDv7: 48-bit Unix milliseconds, version 7, 12 random bits, variant 0b10, 62 random bits; as text. */
static PyObject *new_uuid7(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) & 0xffffffffffffULL;
    unsigned char b[16];
    for (int i = 0; i < 6; i++) {
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    }
    if (random_bytes(b + 6, 10) < 0) {
        return NULL;
    }
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    char text[36];
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            text[j++] = '-';
        }
        text[j++] = HEX[b[i] >> 4];
        text[j++] = HEX[b[i] & 0x0f];
    }
    return PyUnicode_FromStringAndSize(text, 36);
}

static PyObject *uuid7(PyObject *self, PyObject *args) { return new_uuid7(); }

/* -- an event's fields, the common case (events.check_fields) ---------------------------------------------- */

/* An id of the fast path of events.check_fields: an exact str of 3 to 64 ASCII characters, none of them a
   control character, DEL, '/' or '\'. */
static int plain_id(PyObject *v) {
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v)) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    if (n < 3 || n > 64) {
        return 0;
    }
    const unsigned char *c = PyUnicode_1BYTE_DATA(v);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (c[i] < 0x20 || c[i] == 0x7f || c[i] == '/' || c[i] == '\\') {
            return 0;
        }
    }
    return 1;
}

/* check_fields(fields, spec) -> (values, size, ts given) | None. spec = (input field names, the event types it
   takes (a set the Python path adds the custom types it checked to),
   "event_type", "payload", "ts", the id field names, their positions in values, the number of stored fields,
   the positions of the event type, the payload, the execution id, the event id and ts).
   For a dict of known fields whose event type is a known one, with an execution_id, and every id given a plain
   one (plain_id): the stored fields' values (a new UUIDv7 for an event_id not given, ts as given (for the
   caller to parse: the third value says so) or now in microseconds, None where the journal fills them in
   later: seq, ...; the payload as given) and the bytes of the type and the ids given towards the event
   limit. None for
   anything else: the Python path then gives the same answer or the precise error. */
static PyObject *check_fields(PyObject *self, PyObject *args) {
    PyObject *fields, *spec;
    if (!PyArg_ParseTuple(args, "OO!:check_fields", &fields, &PyTuple_Type, &spec)) {
        return NULL;
    }
    PyObject *input, *types, *k_type, *k_payload, *k_ts, *names, *slots;
    Py_ssize_t nfields, type_at, payload_at, execution_at, id_at, ts_at;
    if (!PyArg_ParseTuple(spec, "O!OUUUO!O!nnnnnn:check_fields spec", &PyFrozenSet_Type, &input, &types, &k_type,
                          &k_payload, &k_ts, &PyTuple_Type, &names, &PyTuple_Type, &slots, &nfields, &type_at,
                          &payload_at, &execution_at, &id_at, &ts_at)) {
        return NULL;
    }
    if (!PyAnySet_Check(types) || PyTuple_GET_SIZE(names) != PyTuple_GET_SIZE(slots) || nfields < 1 || type_at < 0 || type_at >= nfields
        || payload_at < 0 || payload_at >= nfields || execution_at < 0 || execution_at >= nfields || id_at < 0
        || id_at >= nfields || ts_at < 0 || ts_at >= nfields) {
        PyErr_SetString(PyExc_ValueError, "check_fields: a bad spec");
        return NULL;
    }
    if (!PyDict_CheckExact(fields)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(fields, &pos, &key, &value)) {
        int known = PySet_Contains(input, key);
        if (known != 1) {
            if (known < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    PyObject *type = PyDict_GetItemWithError(fields, k_type);
    if (type == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (!PyUnicode_CheckExact(type) || !PyUnicode_IS_ASCII(type)) {
        Py_RETURN_NONE;
    }
    int known = PySet_Contains(types, type);
    if (known != 1) {
        if (known < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *ts = PyDict_GetItemWithError(fields, k_ts);
    if (ts == NULL && PyErr_Occurred()) {
        return NULL;
    }
    int ts_given = ts != NULL && ts != Py_None;
    PyObject *values = PyList_New(nfields);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nfields; i++) {
        PyList_SET_ITEM(values, i, Py_NewRef(Py_None));
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(type);
    Py_SETREF(PyList_GET_ITEM(values, type_at), Py_NewRef(type));
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *v = PyDict_GetItemWithError(fields, PyTuple_GET_ITEM(names, i));
        if (v == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(values);
                return NULL;
            }
            continue;
        }
        if (v == Py_None) {
            continue;
        }
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(slots, i));
        if (at < 0 || at >= nfields || !plain_id(v)) {
            Py_DECREF(values);
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        Py_SETREF(PyList_GET_ITEM(values, at), Py_NewRef(v));
        size += PyUnicode_GET_LENGTH(v);
    }
    PyObject *payload = PyDict_GetItemWithError(fields, k_payload);
    if (payload != NULL) {
        Py_SETREF(PyList_GET_ITEM(values, payload_at), Py_NewRef(payload));
    } else if (PyErr_Occurred()) {
        Py_DECREF(values);
        return NULL;
    }
    if (PyList_GET_ITEM(values, execution_at) == Py_None) { /* required */
        Py_DECREF(values);
        Py_RETURN_NONE;
    }
    if (PyList_GET_ITEM(values, id_at) == Py_None) {
        PyObject *id = new_uuid7();
        if (id == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        Py_SETREF(PyList_GET_ITEM(values, id_at), id);
    }
    if (ts_given) {
        Py_SETREF(PyList_GET_ITEM(values, ts_at), Py_NewRef(ts)); /* as given: the caller parses it */
    } else {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        PyObject *micros = PyLong_FromLongLong((long long)now.tv_sec * 1000000 + now.tv_nsec / 1000);
        if (micros == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        Py_SETREF(PyList_GET_ITEM(values, ts_at), micros);
    }
    return Py_BuildValue("(NnO)", values, size, ts_given ? Py_True : Py_False);
}

/* -- one WAL frame of chained records (FORMAT.md 2.3 and 11) --------------------------------------------- */

/* hmac_states(key, prefix) -> capsule: the two SHA-256 contexts of HMAC-SHA256 under key (RFC 2104), the inner
   one having absorbed (key ^ ipad) || prefix, the outer one (key ^ opad); chain_frame takes them. A capsule of
   this module's, so that no other bytes can pass for OpenSSL's contexts. */
#define STATES_NAME "wormjournal._native.hmac_states"

static void states_free(PyObject *capsule) { PyMem_Free(PyCapsule_GetPointer(capsule, STATES_NAME)); }
static PyObject *hmac_states(PyObject *self, PyObject *args) {
    Py_buffer key, prefix;
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "y*y*:hmac_states", &key, &prefix)) {
        return NULL;
    }
    unsigned char k0[64] = {0}, pad[64];
    if (key.len > 64) {
        SHA256_((const unsigned char *)key.buf, (size_t)key.len, k0);
    } else {
        memcpy(k0, key.buf, (size_t)key.len);
    }
    PyObject *result = NULL;
    sha_ctx *ctx = PyMem_Calloc(2, sizeof(sha_ctx));
    if (ctx == NULL) {
        PyErr_NoMemory();
    } else {
        for (int i = 0; i < 64; i++) {
            pad[i] = k0[i] ^ 0x36;
        }
        sha_init(&ctx[0]);
        sha_update(&ctx[0], pad, 64);
        sha_update(&ctx[0], prefix.buf, (size_t)prefix.len);
        for (int i = 0; i < 64; i++) {
            pad[i] = k0[i] ^ 0x5c;
        }
        sha_init(&ctx[1]);
        sha_update(&ctx[1], pad, 64);
        result = PyCapsule_New(ctx, STATES_NAME, states_free);
        if (result == NULL) {
            PyMem_Free(ctx);
        }
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&prefix);
    return result;
}

/* chain_frame(values_lists, kinds, prev, tag, states, crc32) -> (frame, last hash): each values list's canonical
   field bytes (encode_fields), its event hash SHA-256(tag || previous hash || fields) chained from prev, and
   the WAL frame of those records: u32be body_len || u32be crc32(body || mac) || body || mac, body = u32be count
   || count * (u32be len || fields || hash), mac = HMAC-SHA256 over body from `states` (hmac_states). crc32 is
   zlib.crc32. The same bytes as stages.Chain then stages.Frame. */
static PyObject *chain_frame(PyObject *self, PyObject *args) {
    PyObject *lists, *kinds, *states, *crc32;
    Py_buffer prev, tag;
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "OO!y*y*OO:chain_frame", &lists, &PyBytes_Type, &kinds, &prev,
                                           &tag, &states, &crc32)) {
        return NULL;
    }
    PyObject *result = NULL, *seq = NULL, *frame = NULL, **encs = NULL;
    Py_ssize_t n = 0;
    if (!PyCapsule_IsValid(states, STATES_NAME)) {
        PyErr_SetString(PyExc_TypeError, "states is not what hmac_states returns");
        goto done;
    }
    const sha_ctx *hmac_ctx = PyCapsule_GetPointer(states, STATES_NAME);
    if (prev.len != 32) {
        PyErr_SetString(PyExc_ValueError, "prev is not 32 bytes");
        goto done;
    }
    seq = PySequence_List(lists); /* our own list: encoding an item runs no code that can change it */
    if (seq == NULL) {
        goto done;
    }
    n = PyList_GET_SIZE(seq);
    if (n < 1 || n > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "a frame holds 1 to 2**32 - 1 records");
        goto done;
    }
    encs = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    if (encs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t body = 4;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PyTuple_Pack(2, PyList_GET_ITEM(seq, i), kinds);
        encs[i] = a == NULL ? NULL : encode_fields(NULL, a);
        Py_XDECREF(a);
        if (encs[i] == NULL) {
            goto done;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(encs[i]) + 32;
        if (len > 0xffffffffLL || body > PY_SSIZE_T_MAX / 2) {
            PyErr_SetString(PyExc_OverflowError, "a record is over 4 GiB");
            goto done;
        }
        body += 4 + len;
    }
    if (body > 0xffffffffLL) {
        PyErr_SetString(PyExc_OverflowError, "a frame is over 4 GiB");
        goto done;
    }
    frame = PyBytes_FromStringAndSize(NULL, 8 + body + 32);
    if (frame == NULL) {
        goto done;
    }
    unsigned char *f = (unsigned char *)PyBytes_AS_STRING(frame);
    unsigned char *p = f + 8;
    const unsigned char *last = (const unsigned char *)prev.buf;
    put_u32((char *)p, (uint32_t)n);
    p += 4;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyBytes_GET_SIZE(encs[i]);
        put_u32((char *)p, (uint32_t)(len + 32));
        memcpy(p + 4, PyBytes_AS_STRING(encs[i]), (size_t)len);
        sha_ctx ctx;
        sha_init(&ctx);
        sha_update(&ctx, tag.buf, (size_t)tag.len);
        sha_update(&ctx, last, 32);
        sha_update(&ctx, p + 4, (size_t)len);
        sha_final(p + 4 + len, &ctx);
        last = p + 4 + len;
        p += 4 + len + 32;
    }
    {
        sha_ctx ctx[2];
        unsigned char inner[32];
        memcpy(ctx, hmac_ctx, sizeof(ctx));
        sha_update(&ctx[0], f + 8, (size_t)body);
        sha_final(inner, &ctx[0]);
        sha_update(&ctx[1], inner, 32);
        sha_final(p, &ctx[1]);
    }
    /* a view that holds the frame (the callee may keep it), of body and mac */
    PyObject *whole = PyMemoryView_FromObject(frame);
    PyObject *eight = PyLong_FromLong(8);
    PyObject *cut = eight == NULL ? NULL : PySlice_New(eight, NULL, NULL);
    PyObject *view = whole == NULL || cut == NULL ? NULL : PyObject_GetItem(whole, cut);
    Py_XDECREF(eight);
    Py_XDECREF(cut);
    Py_XDECREF(whole);
    PyObject *crc = view == NULL ? NULL : PyObject_CallOneArg(crc32, view);
    Py_XDECREF(view);
    if (crc == NULL) {
        goto done;
    }
    unsigned long c = PyLong_AsUnsignedLong(crc);
    Py_DECREF(crc);
    if (c == (unsigned long)-1 && PyErr_Occurred()) {
        goto done;
    }
    put_u32((char *)f, (uint32_t)body);
    put_u32((char *)f + 4, (uint32_t)c);
    PyObject *h = PyBytes_FromStringAndSize((const char *)last, 32);
    if (h != NULL) {
        result = PyTuple_Pack(2, frame, h);
        Py_DECREF(h);
    }
done:
    if (encs != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_XDECREF(encs[i]);
        }
        PyMem_Free(encs);
    }
    Py_XDECREF(frame);
    Py_XDECREF(seq);
    PyBuffer_Release(&prev);
    PyBuffer_Release(&tag);
    return result;
}

/* -- event hashes and Merkle roots of a segment's rows, from Arrow buffers (verification) ------------------ */

/* Two messages hashed at once with the x86 SHA extensions (SHA-NI), when the CPU has them: a SHA-256 round
   instruction waits for the one before it, so two independent messages interleaved keep the unit busy where one
   leaves it idle half the time (about 1.5 times the bytes per second of OpenSSL's one message at a time). The
   compression function is the one of Intel's SHA extensions paper, in a loop of 16 four-round steps; the
   property tests hold it to hashlib. Elsewhere (sha_ni_on 0) every hash is OpenSSL's. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define SHA_NI_BUILT 1
#define SHA_NI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
static const uint32_t SHA_H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The state of one message as the round instructions hold it: (a, b, e, f) and (c, d, g, h). */
typedef struct {
    __m128i abef, cdgh;
} ni_state;

SHA_NI_TARGET static ni_state ni_init(void) {
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&SHA_H0[0]), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&SHA_H0[4]), 0x1B);
    ni_state s = {_mm_alignr_epi8(dcba, efgh, 8), _mm_blend_epi16(efgh, dcba, 0xF0)};
    return s;
}

SHA_NI_TARGET static void ni_digest(ni_state s, unsigned char *out) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i feba = _mm_shuffle_epi32(s.abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(s.cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(_mm_blend_epi16(feba, dchg, 0xF0), swap));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_shuffle_epi8(_mm_alignr_epi8(dchg, feba, 8), swap));
}

/* The message words of four-round step g + 1 (steps 3 to 14) and the first half of those of step g + 3 (steps 1
   to 12), from those of steps g - 1, g and g + 1 (m, indexed mod 4). */
#define NI_SCHEDULE_2(m, g)                                                                                   \
    if ((g) >= 3 && (g) < 15) {                                                                               \
        m[((g) + 1) & 3] = _mm_sha256msg2_epu32(                                                              \
            _mm_add_epi32(m[((g) + 1) & 3], _mm_alignr_epi8(m[(g) & 3], m[((g) - 1) & 3], 4)), m[(g) & 3]);   \
    }
#define NI_SCHEDULE_1(m, g)                                                                                   \
    if ((g) >= 1 && (g) < 13) {                                                                               \
        m[((g) - 1) & 3] = _mm_sha256msg1_epu32(m[((g) - 1) & 3], m[(g) & 3]);                                \
    }

/* One 64-byte block (at p) into one state. */
SHA_NI_TARGET static inline void ni_block1(ni_state *s, const unsigned char *p) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a = s->abef, c = s->cdgh, m[4], w;
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        if (g < 4) {
            m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), swap);
        }
        w = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)(SHA_K + 4 * g)));
        c = _mm_sha256rnds2_epu32(c, a, w);
        NI_SCHEDULE_2(m, g)
        a = _mm_sha256rnds2_epu32(a, c, _mm_shuffle_epi32(w, 0x0E));
        NI_SCHEDULE_1(m, g)
    }
    s->abef = _mm_add_epi32(a, s->abef);
    s->cdgh = _mm_add_epi32(c, s->cdgh);
}

/* One 64-byte block into each of two states (at p and q), their rounds interleaved. */
SHA_NI_TARGET static inline void ni_block2(ni_state *s, ni_state *t, const unsigned char *p, const unsigned char *q) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a = s->abef, c = s->cdgh, b = t->abef, d = t->cdgh, m[4], n[4], w, x;
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        if (g < 4) {
            m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), swap);
            n[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(q + 16 * g)), swap);
        }
        __m128i key = _mm_loadu_si128((const __m128i *)(SHA_K + 4 * g));
        w = _mm_add_epi32(m[g & 3], key);
        x = _mm_add_epi32(n[g & 3], key);
        c = _mm_sha256rnds2_epu32(c, a, w);
        d = _mm_sha256rnds2_epu32(d, b, x);
        NI_SCHEDULE_2(m, g)
        NI_SCHEDULE_2(n, g)
        a = _mm_sha256rnds2_epu32(a, c, _mm_shuffle_epi32(w, 0x0E));
        b = _mm_sha256rnds2_epu32(b, d, _mm_shuffle_epi32(x, 0x0E));
        NI_SCHEDULE_1(m, g)
        NI_SCHEDULE_1(n, g)
    }
    s->abef = _mm_add_epi32(a, s->abef);
    s->cdgh = _mm_add_epi32(c, s->cdgh);
    t->abef = _mm_add_epi32(b, t->abef);
    t->cdgh = _mm_add_epi32(d, t->cdgh);
}

/* A message of two pieces, head then body, as 64-byte blocks: whole blocks where they are, the one block across
   the pieces in `edge`, the last bytes and the padding (one or two blocks) in `tail`. */
typedef struct {
    const unsigned char *head, *body;
    size_t hl, bl, whole, blocks;
    unsigned char edge[64], tail[128];
} ni_message;

static void ni_copy(const ni_message *m, size_t from, size_t len, unsigned char *to) {
    if (from < m->hl) {
        size_t k = m->hl - from < len ? m->hl - from : len;
        memcpy(to, m->head + from, k);
        from += k, to += k, len -= k;
    }
    if (len) {
        memcpy(to, m->body + (from - m->hl), len);
    }
}

static void ni_message_init(ni_message *m, const unsigned char *head, size_t hl, const unsigned char *body,
                            size_t bl) {
    size_t len = hl + bl, rest = len % 64;
    m->head = head, m->hl = hl, m->body = body, m->bl = bl;
    m->whole = len / 64;
    if (hl % 64 && hl / 64 < m->whole) {
        ni_copy(m, hl / 64 * 64, 64, m->edge);
    }
    size_t tail = rest + 9 <= 64 ? 64 : 128;
    m->blocks = m->whole + tail / 64;
    ni_copy(m, 64 * m->whole, rest, m->tail);
    m->tail[rest] = 0x80;
    memset(m->tail + rest + 1, 0, tail - rest - 9);
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) {
        m->tail[tail - 1 - i] = (unsigned char)(bits >> (8 * i));
    }
}

static const unsigned char *ni_block(const ni_message *m, size_t b) {
    size_t at = 64 * b;
    if (b >= m->whole) {
        return m->tail + (at - 64 * m->whole);
    }
    if (at + 64 <= m->hl) {
        return m->head + at;
    }
    return at >= m->hl ? m->body + (at - m->hl) : m->edge;
}

/* SHA-256 of the messages a (ha then ba) and b (hb then bb), to oa and ob, the two interleaved while both have
   blocks left. */
SHA_NI_TARGET static void ni_sha256_2(const unsigned char *ha, size_t hla, const unsigned char *ba, size_t bla,
                                      const unsigned char *hb, size_t hlb, const unsigned char *bb, size_t blb,
                                      unsigned char *oa, unsigned char *ob) {
    ni_message msg[2];
    ni_message_init(&msg[0], ha, hla, ba, bla);
    ni_message_init(&msg[1], hb, hlb, bb, blb);
    ni_state st[2] = {ni_init(), ni_init()};
    size_t both = msg[0].blocks < msg[1].blocks ? msg[0].blocks : msg[1].blocks;
    for (size_t i = 0; i < both; i++) {
        ni_block2(&st[0], &st[1], ni_block(&msg[0], i), ni_block(&msg[1], i));
    }
    for (int k = 0; k < 2; k++) {
        for (size_t i = both; i < msg[k].blocks; i++) {
            ni_block1(&st[k], ni_block(&msg[k], i));
        }
    }
    ni_digest(st[0], oa);
    ni_digest(st[1], ob);
}

/* One long message (a segment object) hashed a block at a time in one lane while short messages take the other
   (ni_sha256_beside): the unit then does two blocks for about the time of one. */
typedef struct {
    ni_message m;
    ni_state s;
    size_t b; /* the next block */
} ni_stream;

SHA_NI_TARGET static void ni_stream_init(ni_stream *st, const unsigned char *data, size_t len) {
    ni_message_init(&st->m, data, len, NULL, 0);
    st->s = ni_init();
    st->b = 0;
}

/* The stream's blocks left, then its SHA-256 to out. */
SHA_NI_TARGET static void ni_stream_finish(ni_stream *st, unsigned char *out) {
    for (; st->b < st->m.blocks; st->b++) {
        ni_block1(&st->s, ni_block(&st->m, st->b));
    }
    ni_digest(st->s, out);
}

/* SHA-256 of a message already padded to `blocks` 64-byte blocks at p, to out, each block beside the stream's next
   one while it has any. */
SHA_NI_TARGET static void ni_sha256_beside(ni_stream *st, const unsigned char *p, size_t blocks, unsigned char *out) {
    ni_state s = ni_init();
    for (size_t k = 0; k < blocks; k++) {
        if (st->b < st->m.blocks) {
            ni_block2(&st->s, &s, ni_block(&st->m, st->b++), p + 64 * k);
        } else {
            ni_block1(&s, p + 64 * k);
        }
    }
    ni_digest(s, out);
}

static int sha_ni_usable(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) {
        return 0;
    }
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)); /* CPUID.7.0:EBX.SHA */
}
#else
#define SHA_NI_BUILT 0
static int sha_ni_usable(void) { return 0; }
#endif

static int SHA_NI_ON = -1; /* -1: not asked yet */

static int sha_ni_on(void) {
    if (SHA_NI_ON < 0) {
        SHA_NI_ON = sha_ni_usable();
    }
    return SHA_NI_ON;
}

/* sha_ni(on) -> bool: whether event_hashes and merkle_blocks hash two messages at once with SHA-NI (None: ask;
   False: OpenSSL only, as the tests compare; True: where the CPU has them). */
static PyObject *sha_ni(PyObject *self, PyObject *arg) {
    if (arg != Py_None) {
        int want = PyObject_IsTrue(arg);
        if (want < 0) {
            return NULL;
        }
        SHA_NI_ON = want && sha_ni_usable();
    }
    return PyBool_FromLong(sha_ni_on());
}

/* SHA-256 of two messages, each a head and a body (ba, bb may be NULL with length 0), to oa and ob. */
static void sha256_pair(const unsigned char *ha, size_t hla, const unsigned char *ba, size_t bla,
                        const unsigned char *hb, size_t hlb, const unsigned char *bb, size_t blb, unsigned char *oa,
                        unsigned char *ob) {
#if SHA_NI_BUILT
    if (sha_ni_on()) {
        ni_sha256_2(ha, hla, ba, bla, hb, hlb, bb, blb, oa, ob);
        return;
    }
#endif
    const unsigned char *heads[2] = {ha, hb}, *bodies[2] = {ba, bb};
    size_t hls[2] = {hla, hlb}, bls[2] = {bla, blb};
    unsigned char *outs[2] = {oa, ob};
    for (int k = 0; k < 2; k++) {
        sha_ctx ctx;
        sha_init(&ctx);
        sha_update(&ctx, heads[k], hls[k]);
        if (bls[k]) {
            sha_update(&ctx, bodies[k], bls[k]);
        }
        sha_final(outs[k], &ctx);
    }
}

/* One column of event_hashes: an Arrow array's buffers. kind 'r' raw bytes (the prev_hash, hashed without a
   length prefix, a null as no bytes), 's'/'b' a string or binary field (u32be len || bytes, a null as the
   NULL mark), 'i' an int64 field (u32be 8 || i64be, a null as the NULL mark). */
typedef struct {
    char kind;
    Py_ssize_t offset;  /* the array's offset, in values */
    Py_buffer validity; /* .obj NULL when every value is valid */
    Py_buffer values;   /* 'i': n int64; else n + 1 int32 offsets */
    Py_buffer data;     /* the bytes of 'r', 's', 'b' values; .obj NULL when there are none */
} ArrowColumn;

static int column_valid(const ArrowColumn *c, Py_ssize_t i) {
    if (c->validity.obj == NULL) {
        return 1;
    }
    Py_ssize_t j = c->offset + i;
    return (((const unsigned char *)c->validity.buf)[j >> 3] >> (j & 7)) & 1;
}

static void column_release(ArrowColumn *c) {
    if (c->validity.obj != NULL) {
        PyBuffer_Release(&c->validity);
    }
    if (c->values.obj != NULL) {
        PyBuffer_Release(&c->values);
    }
    if (c->data.obj != NULL) {
        PyBuffer_Release(&c->data);
    }
}

/* Parses (kind, validity | None, offset, values, data | None) into c and checks that the buffers hold n values
   from the offset (offsets in order and inside data). 0, or -1 with an exception set. */
static int column_parse(PyObject *spec, Py_ssize_t n, ArrowColumn *c) {
    PyObject *validity, *values, *data;
    const char *kind;
    Py_ssize_t kind_len;
    if (!PyTuple_Check(spec) || !PyArg_ParseTuple(spec, "s#OnOO:event_hashes column", &kind, &kind_len, &validity,
                                                  &c->offset, &values, &data)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "a column is (kind, validity, offset, values, data)");
        }
        return -1;
    }
    if (kind_len != 1 || strchr("rsbi", kind[0]) == NULL) {
        PyErr_SetString(PyExc_ValueError, "a column's kind is one of r, s, b, i");
        return -1;
    }
    c->kind = kind[0];
    if (c->offset < 0 || c->offset > PY_SSIZE_T_MAX / 8 - n - 1) {
        PyErr_SetString(PyExc_ValueError, "a column's offset is out of range");
        return -1;
    }
    if (validity != Py_None && PyObject_GetBuffer(validity, &c->validity, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(values, &c->values, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (c->kind != 'i' && data != Py_None && PyObject_GetBuffer(data, &c->data, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    Py_ssize_t end = c->offset + n;
    if (c->validity.obj != NULL && c->validity.len < (end + 7) / 8) {
        PyErr_SetString(PyExc_ValueError, "a column's validity bitmap is too short");
        return -1;
    }
    if (c->kind == 'i') {
        if (c->values.len < end * 8) {
            PyErr_SetString(PyExc_ValueError, "an int64 column's values are too short");
            return -1;
        }
        return 0;
    }
    if (c->values.len < (end + 1) * 4) {
        PyErr_SetString(PyExc_ValueError, "a binary column's offsets are too short");
        return -1;
    }
    const int32_t *o = (const int32_t *)c->values.buf;
    Py_ssize_t size = c->data.obj != NULL ? c->data.len : 0;
    for (Py_ssize_t i = c->offset; i < end; i++) {
        if (o[i] < 0 || o[i] > o[i + 1]) {
            PyErr_SetString(PyExc_ValueError, "a binary column's offsets are out of order");
            return -1;
        }
    }
    if (o[c->offset] < 0 || o[end] > size) {
        PyErr_SetString(PyExc_ValueError, "a binary column's offsets run past its data");
        return -1;
    }
    return 0;
}

/* Values at least this long are passed to SHA-256 where they are, not copied into the row's buffer first. */
#define STREAM_BYTES 128

/* The bytes row i adds to its hash input after the tag (the prefixes included), but for its last column's value
   when that is at least STREAM_BYTES long (*body, *body_len: hashed where it is); and those bytes written at p. */
static size_t row_head_size(const ArrowColumn *cols, Py_ssize_t ncols, Py_ssize_t i, const unsigned char **body,
                            size_t *body_len) {
    size_t size = 0;
    *body = NULL;
    *body_len = 0;
    for (Py_ssize_t k = 0; k < ncols; k++) {
        const ArrowColumn *c = &cols[k];
        int valid = column_valid(c, i);
        if (c->kind == 'i') {
            size += valid ? 12 : 4;
            continue;
        }
        const int32_t *o = (const int32_t *)c->values.buf + c->offset + i;
        size_t len = valid ? (size_t)(o[1] - o[0]) : 0;
        size += c->kind == 'r' ? 0 : 4;
        if (k == ncols - 1 && len >= STREAM_BYTES) {
            *body = (const unsigned char *)c->data.buf + o[0];
            *body_len = len;
        } else {
            size += len;
        }
    }
    return size;
}

static void row_head_write(const ArrowColumn *cols, Py_ssize_t ncols, Py_ssize_t i, size_t body_len,
                           unsigned char *p) {
    for (Py_ssize_t k = 0; k < ncols; k++) {
        const ArrowColumn *c = &cols[k];
        if (!column_valid(c, i)) {
            if (c->kind != 'r') {
                memset(p, 0xff, 4);
                p += 4;
            }
            continue;
        }
        if (c->kind == 'i') {
            const unsigned char *v = (const unsigned char *)c->values.buf + 8 * (c->offset + i);
            put_u32((char *)p, 8);
            for (int b = 0; b < 8; b++) { /* Arrow's int64 is little-endian: i64be is its bytes reversed */
                p[4 + b] = v[7 - b];
            }
            p += 12;
            continue;
        }
        const int32_t *o = (const int32_t *)c->values.buf + c->offset + i;
        uint32_t len = (uint32_t)(o[1] - o[0]);
        if (c->kind != 'r') {
            put_u32((char *)p, len);
            p += 4;
        }
        if (k == ncols - 1 && body_len) {
            break; /* the body, hashed where it is */
        }
        if (len) {
            memcpy(p, (const unsigned char *)c->data.buf + o[0], len);
        }
        p += len;
    }
}

/* Every row's event hash, two rows at a time (sha256_pair): each row's input but a long last value written out
   first. Runs without the GIL; 0, or -1 when out of memory. */
static int rows_paired(const ArrowColumn *cols, Py_ssize_t ncols, Py_ssize_t n, const unsigned char *tag,
                       Py_ssize_t tag_len, unsigned char *out) {
    size_t cap = 0;
    unsigned char *buf = NULL;
    for (Py_ssize_t i = 0; i < n; i += 2) {
        Py_ssize_t j = i + 1 < n ? i + 1 : i; /* an odd last row is hashed twice, the second time over itself */
        const unsigned char *ba, *bb;
        size_t bla, blb;
        size_t la = (size_t)tag_len + row_head_size(cols, ncols, i, &ba, &bla);
        size_t lb = (size_t)tag_len + row_head_size(cols, ncols, j, &bb, &blb);
        if (la + lb > cap) {
            unsigned char *grown = PyMem_RawRealloc(buf, 2 * (la + lb));
            if (grown == NULL) {
                PyMem_RawFree(buf);
                return -1;
            }
            buf = grown;
            cap = 2 * (la + lb);
        }
        memcpy(buf, tag, (size_t)tag_len);
        row_head_write(cols, ncols, i, bla, buf + tag_len);
        memcpy(buf + la, tag, (size_t)tag_len);
        row_head_write(cols, ncols, j, blb, buf + la + tag_len);
        sha256_pair(buf, la, ba, bla, buf + la, lb, bb, blb, out + 32 * i, out + 32 * j);
    }
    PyMem_RawFree(buf);
    return 0;
}

/* Every row's event hash, one row at a time (OpenSSL's SHA-256), from the same row bytes as rows_paired. Runs
   without the GIL; 0, or -1 when out of memory. */
static int rows_single(const ArrowColumn *cols, Py_ssize_t ncols, Py_ssize_t n, const unsigned char *tag,
                       Py_ssize_t tag_len, unsigned char *out) {
    size_t cap = 0;
    unsigned char *buf = NULL;
    sha_ctx ctx;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *body;
        size_t body_len;
        size_t len = (size_t)tag_len + row_head_size(cols, ncols, i, &body, &body_len);
        if (len > cap) {
            unsigned char *grown = PyMem_RawRealloc(buf, 2 * len);
            if (grown == NULL) {
                PyMem_RawFree(buf);
                return -1;
            }
            buf = grown;
            cap = 2 * len;
        }
        memcpy(buf, tag, (size_t)tag_len);
        row_head_write(cols, ncols, i, body_len, buf + tag_len);
        sha_init(&ctx);
        sha_update(&ctx, buf, len);
        if (body_len) {
            sha_update(&ctx, body, body_len);
        }
        sha_final(out + 32 * i, &ctx);
    }
    PyMem_RawFree(buf);
    return 0;
}

/* event_hashes(n, tag, columns) -> bytes: for each of n rows, SHA-256(tag || the row's bytes of each column in
   turn), 32 bytes a row: with the stored prev_hash column ('r') then the 16 fields of FORMAT.md 2.1, each row's
   event hash over its stored prev_hash (FORMAT.md 2.3). `columns` are (kind, validity, offset, values, data)
   tuples of Arrow arrays' buffers (ArrowColumn); no Python object is made per row. A row's bytes are gathered
   in a buffer but for a long last value (a payload), hashed where it is; two rows at a time with SHA-NI. */
static PyObject *event_hashes(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    Py_buffer tag;
    PyObject *specs;
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "ny*O!:event_hashes", &n, &tag, &PyTuple_Type, &specs)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t ncols = PyTuple_GET_SIZE(specs);
    ArrowColumn *cols = PyMem_Calloc((size_t)(ncols ? ncols : 1), sizeof(ArrowColumn));
    if (cols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (n < 0 || n > PY_SSIZE_T_MAX / 32 || ncols > 4096) {
        PyErr_SetString(PyExc_ValueError, "n or the number of columns is out of range");
        goto done;
    }
    for (Py_ssize_t k = 0; k < ncols; k++) {
        if (column_parse(PyTuple_GET_ITEM(specs, k), n, &cols[k]) < 0) {
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, 32 * n);
    if (result == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    int failed = 0;
    int paired = sha_ni_on();
    Py_BEGIN_ALLOW_THREADS
    failed = (paired ? rows_paired : rows_single)(cols, ncols, n, (const unsigned char *)tag.buf, tag.len, out);
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_CLEAR(result);
        PyErr_NoMemory();
    }
done:
    if (cols != NULL) {
        for (Py_ssize_t k = 0; k < ncols; k++) {
            column_release(&cols[k]);
        }
        PyMem_Free(cols);
    }
    PyBuffer_Release(&tag);
    return result;
}

/* The root of n leaf hashes at work (32 bytes each), pairing bottom-up in place as mth does; 32 bytes at out.
   Two nodes are hashed at once (sha256_pair). */
static void mth_in_place(unsigned char *work, Py_ssize_t n, unsigned char *out) {
    if (n == 0) {
        SHA256_((const unsigned char *)"", 0, out);
        return;
    }
    unsigned char node[2][65];
    node[0][0] = node[1][0] = 0x01;
    while (n > 1) {
        Py_ssize_t m = 0, i = 0;
        for (; i + 3 < n; i += 4) { /* the children are read before the parents are written over them */
            memcpy(node[0] + 1, work + 32 * i, 64);
            memcpy(node[1] + 1, work + 32 * (i + 2), 64);
            sha256_pair(node[0], 65, NULL, 0, node[1], 65, NULL, 0, work + 32 * m, work + 32 * (m + 1));
            m += 2;
        }
        for (; i + 1 < n; i += 2) {
            memcpy(node[0] + 1, work + 32 * i, 64);
            SHA256_(node[0], 65, work + 32 * m++);
        }
        if (n % 2) {
            memmove(work + 32 * m++, work + 32 * (n - 1), 32);
        }
        n = m;
    }
    memcpy(out, work, 32);
}

#if SHA_NI_BUILT
/* The leaf hashes of n 32-byte hashes at h, to work, then their root as mth_in_place takes it, each hash one lane
   beside the stream. The leaves and nodes are padded here: a leaf (33 bytes) is one block, a node (65) two. */
static void mth_beside(ni_stream *st, const unsigned char *h, Py_ssize_t n, unsigned char *work, unsigned char *out) {
    unsigned char leaf[64] = {0x00}, node[128] = {0x01};
    leaf[33] = 0x80, leaf[62] = 264 >> 8, leaf[63] = 264 & 0xff;    /* the bit lengths, big-endian */
    node[65] = 0x80, node[126] = 520 >> 8, node[127] = 520 & 0xff;
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(leaf + 1, h + 32 * i, 32);
        ni_sha256_beside(st, leaf, 1, work + 32 * i);
    }
    if (n == 0) {
        SHA256_((const unsigned char *)"", 0, out);
        return;
    }
    while (n > 1) {
        Py_ssize_t m = 0, i = 0;
        for (; i + 1 < n; i += 2) { /* the children are read before their parent is written over the first */
            memcpy(node + 1, work + 32 * i, 64);
            ni_sha256_beside(st, node, 2, work + 32 * m++);
        }
        if (n % 2) {
            memmove(work + 32 * m++, work + 32 * (n - 1), 32);
        }
        n = m;
    }
    memcpy(out, work, 32);
}
#endif

/* merkle_blocks(data, block[, whole]) -> (block roots, root[, SHA-256 of whole]): for leaf data of 32 bytes each
   (n * 32 bytes, the event hashes of a segment in storage order), the MTH of each run of `block` leaves (a power of
   two; the last run may be shorter), concatenated, and the MTH of all n leaves (over the block roots: FORMAT.md 5).
   With `whole` (the segment object's bytes), also its SHA-256: with SHA-NI, its blocks are hashed in one lane while
   the tree's hashes take the other (about the time of hashing the object alone, the tree nearly for free). */
static PyObject *merkle_blocks(PyObject *self, PyObject *args) {
    Py_buffer in, whole = {0};
    Py_ssize_t block;
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "y*n|y*:merkle_blocks", &in, &block, &whole)) {
        return NULL;
    }
    PyObject *roots = NULL, *result = NULL;
    unsigned char *work = NULL;
    if (in.len % 32 || block < 1 || (block & (block - 1))) {
        PyErr_SetString(PyExc_ValueError, "not whole 32-byte hashes, or block not a power of two");
        goto done;
    }
    Py_ssize_t n = in.len / 32;
    Py_ssize_t runs = (n + block - 1) / block;
    Py_ssize_t cells = block < n ? block : n;
    cells = cells > runs ? cells : runs;
    work = PyMem_Malloc((size_t)(32 * (cells ? cells : 1)));
    roots = work == NULL ? PyErr_NoMemory() : PyBytes_FromStringAndSize(NULL, 32 * runs);
    if (roots == NULL) {
        goto done;
    }
    unsigned char root[32], digest[32];
    unsigned char *r = (unsigned char *)PyBytes_AS_STRING(roots);
    const unsigned char *h = (const unsigned char *)in.buf;
    int beside = whole.obj != NULL && sha_ni_on();
    Py_BEGIN_ALLOW_THREADS
#if SHA_NI_BUILT
    if (beside) {
        ni_stream st;
        ni_stream_init(&st, (const unsigned char *)whole.buf, (size_t)whole.len);
        for (Py_ssize_t b = 0; b < runs; b++) {
            Py_ssize_t k = n - b * block < block ? n - b * block : block;
            mth_beside(&st, h + 32 * b * block, k, work, r + 32 * b);
        }
        memcpy(work, r, (size_t)(32 * runs));
        mth_in_place(work, runs, root);
        ni_stream_finish(&st, digest);
    }
#endif
    if (!beside) {
        unsigned char leaf[2][33];
        leaf[0][0] = leaf[1][0] = 0x00;
        for (Py_ssize_t b = 0; b < runs; b++) {
            Py_ssize_t k = n - b * block < block ? n - b * block : block;
            const unsigned char *run = h + 32 * b * block;
            Py_ssize_t i = 0;
            for (; i + 1 < k; i += 2) {
                memcpy(leaf[0] + 1, run + 32 * i, 32);
                memcpy(leaf[1] + 1, run + 32 * (i + 1), 32);
                sha256_pair(leaf[0], 33, NULL, 0, leaf[1], 33, NULL, 0, work + 32 * i, work + 32 * (i + 1));
            }
            if (i < k) {
                memcpy(leaf[0] + 1, run + 32 * i, 32);
                SHA256_(leaf[0], 33, work + 32 * i);
            }
            mth_in_place(work, k, r + 32 * b);
        }
        memcpy(work, r, (size_t)(32 * runs));
        mth_in_place(work, runs, root);
        if (whole.obj != NULL) {
            SHA256_((const unsigned char *)whole.buf, (size_t)whole.len, digest);
        }
    }
    Py_END_ALLOW_THREADS
    if (whole.obj != NULL) {
        result = Py_BuildValue("(Oy#y#)", roots, (const char *)root, (Py_ssize_t)32, (const char *)digest,
                               (Py_ssize_t)32);
    } else {
        result = Py_BuildValue("(Oy#)", roots, (const char *)root, (Py_ssize_t)32);
    }
done:
    Py_XDECREF(roots);
    PyMem_Free(work);
    PyBuffer_Release(&in);
    if (whole.obj != NULL) {
        PyBuffer_Release(&whole);
    }
    return result;
}

/* -- Thrift compact protocol: a struct decoded to {field id: (type, value)} (segments/thrift.py) ------------- */

typedef struct {
    const unsigned char *p;
    Py_ssize_t pos, end;
} TReader;

static PyObject *thrift_fail(const char *why) {
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

static int tr_byte(TReader *t, unsigned char *out) {
    if (t->pos >= t->end) {
        PyErr_SetString(PyExc_ValueError, "truncated");
        return -1;
    }
    *out = t->p[t->pos++];
    return 0;
}

static int tr_varint(TReader *t, uint64_t *out) {
    uint64_t result = 0;
    int shift = 0;
    unsigned char b;
    for (;;) {
        if (tr_byte(t, &b)) return -1;
        if (shift == 63 && (b & 0x7F) > 1) {
            PyErr_SetString(PyExc_ValueError, "varint too long");
            return -1;
        }
        result |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) break;
        shift += 7;
        if (shift > 63) {
            PyErr_SetString(PyExc_ValueError, "varint too long");
            return -1;
        }
    }
    *out = result;
    return 0;
}

static int tr_zigzag(TReader *t, int64_t *out) {
    uint64_t n;
    if (tr_varint(t, &n)) return -1;
    *out = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
    return 0;
}

/* The header of a struct's next field: 1 with its type (`kind`) and id (`fid`, from the delta on `*last`, which it
   updates), 0 at the struct's end, -1 (an exception set) on bytes that are not one. */
static int tr_field(TReader *t, int64_t *last, int *kind, int64_t *fid) {
    unsigned char head;
    if (tr_byte(t, &head)) return -1;
    *kind = head & 0x0F;
    if (*kind == 0) return 0;
    if (head >> 4) {
        *fid = *last + (head >> 4);
    } else if (tr_zigzag(t, fid)) {
        return -1;
    }
    *last = *fid;
    return 1;
}

static PyObject *tr_struct(TReader *t, int depth);

/* A decoded footer is a tree of thousands of dicts, lists and tuples that die with the footer: untracked, the
   garbage collector neither walks nor promotes them (promoted, they make the next full collections come sooner,
   each walking the whole heap). A tree has no cycle, so reference counting frees it. */
static PyObject *untracked(PyObject *o) {
    if (o != NULL && PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
    return o;
}

static PyObject *tr_value(TReader *t, int kind, int depth) {
    unsigned char b;
    int64_t v;
    uint64_t n;
    if (depth > 32) return thrift_fail("nested too deep");
    switch (kind) {
    case 1: case 2:  /* a bool in a collection: one byte */
        if (tr_byte(t, &b)) return NULL;
        return PyBool_FromLong(b == 1);
    case 3:
        if (tr_byte(t, &b)) return NULL;
        return PyLong_FromLong(b > 127 ? (long)b - 256 : (long)b);
    case 4: case 5: case 6:
        if (tr_zigzag(t, &v)) return NULL;
        return PyLong_FromLongLong(v);
    case 7: {
        double d;
        if (t->end - t->pos < 8) return thrift_fail("truncated");
        memcpy(&d, t->p + t->pos, 8);  /* little-endian, as Thrift writes it (x86 and arm64 hosts) */
        t->pos += 8;
        return PyFloat_FromDouble(d);
    }
    case 8:
        if (tr_varint(t, &n)) return NULL;
        if (n > (uint64_t)(t->end - t->pos)) return thrift_fail("truncated");
        t->pos += (Py_ssize_t)n;
        return PyBytes_FromStringAndSize((const char *)t->p + t->pos - (Py_ssize_t)n, (Py_ssize_t)n);
    case 9: case 10: {
        unsigned char head;
        uint64_t size;
        int elem;
        PyObject *items, *out;
        if (tr_byte(t, &head)) return NULL;
        size = head >> 4;
        elem = head & 0x0F;
        if (size == 15 && tr_varint(t, &size)) return NULL;
        if (size > (uint64_t)(t->end - t->pos)) return thrift_fail("list longer than its bytes");
        items = PyList_New((Py_ssize_t)size);
        if (items == NULL) return NULL;
        for (Py_ssize_t i = 0; i < (Py_ssize_t)size; i++) {
            PyObject *item = tr_value(t, elem, depth + 1);
            if (item == NULL) {
                Py_DECREF(items);
                return NULL;
            }
            PyList_SET_ITEM(items, i, item);
        }
        out = Py_BuildValue("(iN)", elem, untracked(items));
        return untracked(out);
    }
    case 11: {
        uint64_t size;
        unsigned char types;
        int kt, vt;
        PyObject *items;
        if (tr_varint(t, &size)) return NULL;
        if (size == 0) return Py_BuildValue("(ii[])", 0, 0);
        if (size > (uint64_t)(t->end - t->pos)) return thrift_fail("map longer than its bytes");
        if (tr_byte(t, &types)) return NULL;
        kt = types >> 4;
        vt = types & 0x0F;
        items = PyList_New((Py_ssize_t)size);
        if (items == NULL) return NULL;
        for (Py_ssize_t i = 0; i < (Py_ssize_t)size; i++) {
            PyObject *k = tr_value(t, kt, depth + 1), *x = NULL, *pair;
            if (k != NULL) x = tr_value(t, vt, depth + 1);
            if (x == NULL) {
                Py_XDECREF(k);
                Py_DECREF(items);
                return NULL;
            }
            pair = untracked(PyTuple_Pack(2, k, x));
            Py_DECREF(k);
            Py_DECREF(x);
            if (pair == NULL) {
                Py_DECREF(items);
                return NULL;
            }
            PyList_SET_ITEM(items, i, pair);
        }
        return untracked(Py_BuildValue("(iiN)", kt, vt, untracked(items)));
    }
    case 12:
        return tr_struct(t, depth + 1);
    default: {
        char why[32];
        snprintf(why, sizeof why, "unknown type %d", kind);
        return thrift_fail(why);
    }
    }
}

static PyObject *tr_struct(TReader *t, int depth) {
    PyObject *out = PyDict_New();
    int64_t last = 0;
    if (out == NULL) return NULL;
    for (;;) {
        int kind, more;
        int64_t fid;
        PyObject *value, *key, *entry;
        more = tr_field(t, &last, &kind, &fid);
        if (more < 0) goto fail;
        if (more == 0) return untracked(out);
        if (kind == 1 || kind == 2) {
            value = PyBool_FromLong(kind == 1);
        } else {
            value = tr_value(t, kind, depth);
            if (value == NULL) goto fail;
        }
        key = PyLong_FromLongLong(fid);
        entry = key == NULL ? NULL : untracked(Py_BuildValue("(iN)", kind, value));
        if (entry == NULL) {
            Py_XDECREF(key);
            if (key == NULL) Py_DECREF(value);
            goto fail;
        }
        if (PyDict_SetItem(out, key, entry)) {
            Py_DECREF(key);
            Py_DECREF(entry);
            goto fail;
        }
        Py_DECREF(key);
        Py_DECREF(entry);
    }
fail:
    Py_DECREF(out);
    return NULL;
}

/* Past a field's value of type `kind` (a bool field's is in its header). 0, or -1 with an exception set. */
/* Past a value of type `kind` without making objects of it: the same bytes tr_value reads, refused the same way
   (nesting, lengths, unknown types). 0, or -1 with an exception set. */
static int tr_pass(TReader *t, int kind, int depth) {
    unsigned char b;
    int64_t v;
    uint64_t n;
    if (depth > 32) {
        thrift_fail("nested too deep");
        return -1;
    }
    switch (kind) {
    case 1: case 2: case 3:  /* a bool in a collection, or a byte: one byte */
        return tr_byte(t, &b);
    case 4: case 5: case 6:
        return tr_zigzag(t, &v);
    case 7:
        if (t->end - t->pos < 8) {
            thrift_fail("truncated");
            return -1;
        }
        t->pos += 8;
        return 0;
    case 8:
        if (tr_varint(t, &n)) return -1;
        if (n > (uint64_t)(t->end - t->pos)) {
            thrift_fail("truncated");
            return -1;
        }
        t->pos += (Py_ssize_t)n;
        return 0;
    case 9: case 10: {
        unsigned char head;
        uint64_t size;
        int elem;
        if (tr_byte(t, &head)) return -1;
        size = head >> 4;
        elem = head & 0x0F;
        if (size == 15 && tr_varint(t, &size)) return -1;
        if (size > (uint64_t)(t->end - t->pos)) {
            thrift_fail("list longer than its bytes");
            return -1;
        }
        for (uint64_t i = 0; i < size; i++)
            if (tr_pass(t, elem, depth + 1)) return -1;
        return 0;
    }
    case 11: {
        uint64_t size;
        unsigned char types = 0;
        if (tr_varint(t, &size)) return -1;
        if (size > (uint64_t)(t->end - t->pos)) {
            thrift_fail("map longer than its bytes");
            return -1;
        }
        if (size && tr_byte(t, &types)) return -1;
        for (uint64_t i = 0; i < size; i++)
            if (tr_pass(t, types >> 4, depth + 1) || tr_pass(t, types & 0x0F, depth + 1)) return -1;
        return 0;
    }
    case 12: {
        int64_t last = 0, fid;
        int fkind, more;
        for (;;) {
            more = tr_field(t, &last, &fkind, &fid);
            if (more < 0) return -1;
            if (more == 0) return 0;
            if (fkind != 1 && fkind != 2 && tr_pass(t, fkind, depth + 1)) return -1;
        }
    }
    default: {
        char why[32];
        snprintf(why, sizeof why, "unknown type %d", kind);
        thrift_fail(why);
        return -1;
    }
    }
}

static int tr_skip(TReader *t, int kind) {
    if (kind == 1 || kind == 2) return 0;
    return tr_pass(t, kind, 1);
}

/* The arguments (data, pos, end) of a Thrift reader over data[pos:end]: 0 with `in` held (the caller releases
   it), or -1 with an exception set. */
static int tr_args(PyObject *args, Py_buffer *in, TReader *t) {
    Py_ssize_t pos, end;
    if (!PyArg_ParseTuple(args, "y*nn", in, &pos, &end)) return -1;
    if (pos < 0 || end > in->len || pos > end) {
        PyBuffer_Release(in);
        thrift_fail("truncated");
        return -1;
    }
    t->p = in->buf;
    t->pos = pos;
    t->end = end;
    return 0;
}

static PyObject *thrift_decode(PyObject *self, PyObject *args) {
    Py_buffer in;
    PyObject *s, *result = NULL;
    TReader t;
    (void)self;
    if (tr_args(args, &in, &t)) return NULL;
    s = tr_struct(&t, 0);
    if (s != NULL) result = untracked(Py_BuildValue("(Nn)", s, t.pos));
    PyBuffer_Release(&in);
    return result;
}

/* footer_layout(footer) -> (head, ((rows, chunks), ...), key_value_metadata): of a Parquet footer (FileMetaData,
   Thrift compact), what a page reader needs (segments/pages.py, PageLayout): `head`, the bytes of its version, schema, writer and column
   orders (fields 1, 2, 6, 7: a key for footers alike), and for each row group its rows and, per column chunk, five
   int64 packed little-endian: its offset index's offset and length, its dictionary page's offset, its codec and
   its physical type (FOOTER_MISSING where the footer has no such field); and its key-value metadata (field 5) as
   thrift.decode gives a field's value, None without it. The same values as thrift.decode gives, without a Python
   object per field of the row groups. Raises ValueError on bytes that are not a footer. */

#define FOOTER_MISSING INT64_MIN

static int tr_int(TReader *t, int kind, int64_t *out) {
    unsigned char b;
    if (kind == 3) {
        if (tr_byte(t, &b)) return -1;
        *out = b > 127 ? (int64_t)b - 256 : (int64_t)b;
        return 0;
    }
    if (kind == 4 || kind == 5 || kind == 6) return tr_zigzag(t, out);
    PyErr_SetString(PyExc_ValueError, "a field that should be an integer is not");
    return -1;
}

static int tr_list_head(TReader *t, int *elem, uint64_t *size) {
    unsigned char head;
    if (tr_byte(t, &head)) return -1;
    *size = head >> 4;
    *elem = head & 0x0F;
    if (*size == 15 && tr_varint(t, size)) return -1;
    if (*size > (uint64_t)(t->end - t->pos)) {
        PyErr_SetString(PyExc_ValueError, "list longer than its bytes");
        return -1;
    }
    return 0;
}

/* One ColumnChunk: its five values appended to out. */
static int footer_chunk(TReader *t, int64_t *out) {
    int64_t last = 0, fid;
    int kind, more;
    out[0] = out[1] = out[3] = out[4] = FOOTER_MISSING;
    out[2] = -1;  /* no dictionary page */
    for (;;) {
        more = tr_field(t, &last, &kind, &fid);
        if (more <= 0) return more;
        if (fid == 3 && kind == 12) {  /* ColumnMetaData */
            int64_t mlast = 0, mfid;
            int mkind, mmore;
            for (;;) {
                mmore = tr_field(t, &mlast, &mkind, &mfid);
                if (mmore < 0) return -1;
                if (mmore == 0) break;
                if (mfid == 1 || mfid == 4 || mfid == 11) {
                    if (tr_int(t, mkind, &out[mfid == 1 ? 4 : mfid == 4 ? 3 : 2])) return -1;
                } else if (tr_skip(t, mkind)) {
                    return -1;
                }
            }
        } else if (fid == 4 || fid == 5) {  /* offset_index_offset, offset_index_length */
            if (tr_int(t, kind, &out[fid == 4 ? 0 : 1])) return -1;
        } else if (tr_skip(t, kind)) {
            return -1;
        }
    }
}

static PyObject *footer_layout(PyObject *self, PyObject *args) {
    Py_buffer in;
    PyObject *groups = NULL, *head = NULL, *result = NULL, *kv = NULL;
    unsigned char *headbuf = NULL;
    Py_ssize_t headlen = 0;
    int64_t *cells = NULL;
    TReader t;
    int64_t last = 0, fid;
    int kind, more;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    t.p = in.buf;
    t.pos = 0;
    t.end = in.len;
    headbuf = PyMem_Malloc((size_t)in.len + 16);
    groups = PyList_New(0);
    if (headbuf == NULL || groups == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (;;) {
        Py_ssize_t start;
        more = tr_field(&t, &last, &kind, &fid);
        if (more < 0) goto done;
        if (more == 0) break;
        start = t.pos;
        if (fid == 4 && kind == 9) {
            int elem;
            uint64_t n;
            if (tr_list_head(&t, &elem, &n)) goto done;
            if (elem != 12) {
                PyErr_SetString(PyExc_ValueError, "row groups are not structs");
                goto done;
            }
            for (uint64_t g = 0; g < n; g++) {
                int64_t glast = 0, gfid, rows = FOOTER_MISSING;
                int gkind, gmore;
                Py_ssize_t ncells = 0;
                PyObject *packed, *entry;
                for (;;) {
                    gmore = tr_field(&t, &glast, &gkind, &gfid);
                    if (gmore < 0) goto done;
                    if (gmore == 0) break;
                    if (gfid == 1 && gkind == 9) {
                        int celem;
                        uint64_t cn;
                        if (tr_list_head(&t, &celem, &cn)) goto done;
                        if (celem != 12) {
                            PyErr_SetString(PyExc_ValueError, "column chunks are not structs");
                            goto done;
                        }
                        PyMem_Free(cells);
                        cells = PyMem_Malloc(sizeof(int64_t) * 5 * (size_t)(cn ? cn : 1));
                        if (cells == NULL) {
                            PyErr_NoMemory();
                            goto done;
                        }
                        for (uint64_t c = 0; c < cn; c++)
                            if (footer_chunk(&t, cells + 5 * c) < 0) goto done;
                        ncells = (Py_ssize_t)(5 * cn);
                    } else if (gfid == 3) {
                        if (tr_int(&t, gkind, &rows)) goto done;
                    } else if (tr_skip(&t, gkind)) {
                        goto done;
                    }
                }
                packed = PyBytes_FromStringAndSize(cells ? (const char *)cells : "", ncells * 8);
                if (packed == NULL) goto done;
                entry = rows == FOOTER_MISSING ? Py_BuildValue("(ON)", Py_None, packed)
                                               : Py_BuildValue("(LN)", (long long)rows, packed);
                if (entry == NULL || PyList_Append(groups, entry)) {
                    Py_XDECREF(entry);
                    goto done;
                }
                Py_DECREF(entry);
                PyMem_Free(cells);
                cells = NULL;
            }
        } else if (fid == 5 && kv == NULL) {  /* key_value_metadata, as thrift.decode has it */
            kv = tr_value(&t, kind, 0);
            if (kv == NULL) goto done;
        } else {
            if (tr_skip(&t, kind)) goto done;
            if (fid == 1 || fid == 2 || fid == 6 || fid == 7) {
                headbuf[headlen++] = (unsigned char)fid;
                memcpy(headbuf + headlen, t.p + start, (size_t)(t.pos - start));
                headlen += t.pos - start;
            }
        }
    }
    head = PyBytes_FromStringAndSize((const char *)headbuf, headlen);
    if (head != NULL) result = Py_BuildValue("(NNO)", head, PyList_AsTuple(groups), kv != NULL ? kv : Py_None);
done:
    PyMem_Free(cells);
    PyMem_Free(headbuf);
    Py_XDECREF(groups);
    Py_XDECREF(kv);
    PyBuffer_Release(&in);
    return result;
}

/* The page locations of an OffsetIndex (parquet.thrift) at t: int64 triples (offset, compressed size, first row),
   one per page, in *cells (PyMem; the caller frees it), their number in *count. 0, or -1 with an exception set. */
static int oi_cells(TReader *t, int64_t **cells, uint64_t *count) {
    int64_t last = 0;
    int have = 0;
    *cells = NULL;
    *count = 0;
    for (;;) {
        int kind, more;
        int64_t fid;
        more = tr_field(t, &last, &kind, &fid);
        if (more < 0) return -1;
        if (more == 0) break;
        if (fid == 1 && kind == 9 && !have) {  /* page_locations: list<PageLocation> */
            unsigned char lh;
            uint64_t n;
            if (tr_byte(t, &lh)) return -1;
            n = lh >> 4;
            if (n == 15 && tr_varint(t, &n)) return -1;
            if ((lh & 0x0F) != 12 || n > (uint64_t)(t->end - t->pos)) {
                thrift_fail("page locations are not a list of structs");
                return -1;
            }
            *cells = PyMem_Calloc(n ? n * 3 : 1, sizeof(int64_t));
            if (*cells == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            *count = n;
            for (uint64_t i = 0; i < n; i++) {
                int64_t flast = 0;
                int seen = 0;
                for (;;) {
                    int fk, fmore;
                    int64_t ffid, v;
                    fmore = tr_field(t, &flast, &fk, &ffid);
                    if (fmore < 0) return -1;
                    if (fmore == 0) break;
                    if (ffid >= 1 && ffid <= 3 && (fk == 5 || fk == 6)) {
                        if (tr_zigzag(t, &v)) return -1;
                        (*cells)[i * 3 + (uint64_t)(ffid - 1)] = v;
                        seen |= 1 << (ffid - 1);
                    } else if (tr_skip(t, fk)) {
                        return -1;
                    }
                }
                if (seen != 7) {
                    thrift_fail("a page location lacks a field");
                    return -1;
                }
            }
            have = 1;
        } else if (tr_skip(t, kind)) {
            return -1;
        }
    }
    if (!have) {
        thrift_fail("no page locations");
        return -1;
    }
    return 0;
}

/* An OffsetIndex as packed little-endian int64 triples (offset, compressed size, first row), one per page: the page
   locations alone, without a Python object per page. */
static PyObject *thrift_page_locations(PyObject *self, PyObject *args) {
    Py_buffer in;
    PyObject *out = NULL;
    TReader t;
    int64_t *cells = NULL;
    uint64_t count = 0;
    (void)self;
    if (tr_args(args, &in, &t)) return NULL;
    if (oi_cells(&t, &cells, &count) == 0)
        out = PyBytes_FromStringAndSize(count ? (const char *)cells : "", (Py_ssize_t)(count * 3 * sizeof(int64_t)));
    PyMem_Free(cells);
    PyBuffer_Release(&in);
    return out;
}

/* page_offsets(raw, spans, page_rows, rows) -> bytes: for a row group of `rows` rows whose columns' OffsetIndex
   structs lie at spans ((start, end) in raw, one per column), each column's page offsets and the end of its last
   page (int64, packed, column after column), once every column's pages are checked to hold page_rows rows each
   (the last fewer) and to follow one another; ValueError otherwise (segments/pages.py, PageLayout.columns). */
static PyObject *page_offsets(PyObject *self, PyObject *args) {
    Py_buffer in;
    PyObject *spans, *out = NULL;
    Py_ssize_t page_rows, rows, ncols, npages;
    int64_t *packed = NULL, *cells = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*Onn", &in, &spans, &page_rows, &rows)) return NULL;
    if (!PyTuple_Check(spans) || page_rows <= 0 || rows <= 0) {
        thrift_fail("bad arguments");
        goto done;
    }
    ncols = PyTuple_GET_SIZE(spans);
    npages = (rows + page_rows - 1) / page_rows;
    packed = PyMem_Malloc(sizeof(int64_t) * (size_t)(ncols * (npages + 1) + 1));
    if (packed == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        Py_ssize_t a, b;
        uint64_t count;
        TReader t;
        PyObject *span = PyTuple_GET_ITEM(spans, c);
        if (!PyTuple_Check(span) || !PyArg_ParseTuple(span, "nn", &a, &b)) {
            if (!PyErr_Occurred()) thrift_fail("bad arguments");
            goto done;
        }
        if (a < 0 || b > in.len || a > b) {
            thrift_fail("truncated");
            goto done;
        }
        t.p = in.buf;
        t.pos = a;
        t.end = b;
        PyMem_Free(cells);
        if (oi_cells(&t, &cells, &count)) goto done;
        if ((Py_ssize_t)count != npages) {
            thrift_fail("its pages are not of page_rows rows");
            goto done;
        }
        for (Py_ssize_t i = 0; i < npages; i++) {
            int64_t at = cells[i * 3], size = cells[i * 3 + 1];
            if (cells[i * 3 + 2] != (int64_t)(i * page_rows)) {
                thrift_fail("its pages are not of page_rows rows");
                goto done;
            }
            if (size < 0 || at < 0 || at > INT64_MAX - size || (i + 1 < npages && at + size != cells[i * 3 + 3])) {
                thrift_fail("its pages are not one after another");
                goto done;
            }
            packed[c * (npages + 1) + i] = at;
            if (i + 1 == npages) packed[c * (npages + 1) + npages] = at + size;
        }
    }
    out = PyBytes_FromStringAndSize((const char *)packed, (Py_ssize_t)(sizeof(int64_t) * (size_t)(ncols * (npages + 1))));
done:
    PyMem_Free(cells);
    PyMem_Free(packed);
    PyBuffer_Release(&in);
    return out;
}

/* -- Parquet data pages, decoded straight to Arrow buffers (segments/plain.py) ---------------------------------

   decode_chunk(data, start, end, codec, kind, nullable, rows) decodes the column chunk data[start:end] of a file
   written as wormjournal writes segments (FORMAT.md 5): version 1 data pages only (no dictionary page), PLAIN
   values, definition levels RLE/bit-packed with bit width 1 (nullable columns), pages uncompressed (codec 0) or
   zstd (codec 6, through the system's libzstd, loaded at run time). kind 'l' is INT64, 'b' BYTE_ARRAY. It returns
   (validity bitmap or None, null count, int32 offsets or None, values): the buffers of an Arrow array of `rows`
   rows. Anything else, or bytes that do not decode to exactly `rows` rows filling the chunk, raises ValueError:
   the caller then reads the file with pyarrow, whose answer (rows or error) is the reference. One zstd context is
   reused (the GIL is held), which is most of the gain over decoding pages of a few hundred rows with pyarrow. */

typedef void *(*zstd_create_fn)(void);
typedef size_t (*zstd_decompress_fn)(void *, void *, size_t, const void *, size_t);
typedef unsigned (*zstd_is_error_fn)(size_t);
static zstd_decompress_fn zstd_decompress = NULL;
static zstd_is_error_fn zstd_is_error = NULL;
static void *ZSTD_CTX = NULL;
static int ZSTD_TRIED = 0;

static int zstd_ready(void) {
    if (!ZSTD_TRIED) {
        void *handle;
        ZSTD_TRIED = 1;
        handle = dlopen("libzstd.so.1", RTLD_LAZY | RTLD_LOCAL);
        if (handle != NULL) {
            zstd_create_fn create = (zstd_create_fn)dlsym(handle, "ZSTD_createDCtx");
            zstd_decompress = (zstd_decompress_fn)dlsym(handle, "ZSTD_decompressDCtx");
            zstd_is_error = (zstd_is_error_fn)dlsym(handle, "ZSTD_isError");
            if (create != NULL && zstd_decompress != NULL && zstd_is_error != NULL) ZSTD_CTX = create();
        }
    }
    return ZSTD_CTX != NULL;
}

static PyObject *zstd_available(PyObject *self, PyObject *args) { return PyBool_FromLong(zstd_ready()); }

typedef struct {
    int64_t type, usize, csize, values, encoding, def_encoding;
    int has_data;
} PageHead;

/* A PageHeader (parquet.thrift): the fields a version 1 data page needs; any other field is skipped. */
static int page_head(TReader *t, PageHead *h) {
    int64_t last = 0, fid, v;
    int kind, more;
    memset(h, 0, sizeof *h);
    h->type = h->usize = h->csize = -1;
    while ((more = tr_field(t, &last, &kind, &fid)) > 0) {
        if (fid >= 1 && fid <= 3 && kind == 5) {
            if (tr_zigzag(t, &v)) return -1;
            if (fid == 1) h->type = v; else if (fid == 2) h->usize = v; else h->csize = v;
        } else if (fid == 5 && kind == 12) {  /* DataPageHeader */
            int64_t dlast = 0, dfid;
            int dk, dmore;
            h->has_data = 1;
            h->values = h->encoding = h->def_encoding = -1;
            while ((dmore = tr_field(t, &dlast, &dk, &dfid)) > 0) {
                if (dfid >= 1 && dfid <= 3 && dk == 5) {
                    if (tr_zigzag(t, &v)) return -1;
                    if (dfid == 1) h->values = v; else if (dfid == 2) h->encoding = v; else h->def_encoding = v;
                } else if (tr_skip(t, dk)) {
                    return -1;
                }
            }
            if (dmore < 0) return -1;
        } else if (tr_skip(t, kind)) {
            return -1;
        }
    }
    return more;  /* 0 at the header's end, -1 on bytes that are not one */
}

static uint32_t get_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* n definition levels of bit width 1 from the RLE/bit-packed hybrid p[0:len]: bit (row + i) of `valid` set where
   the level is 1. Returns the number of 1s, or -1. */
static Py_ssize_t def_levels(const unsigned char *p, Py_ssize_t len, Py_ssize_t n, unsigned char *valid,
                             Py_ssize_t row) {
    Py_ssize_t pos = 0, done = 0, ones = 0;
    while (done < n) {
        uint64_t header = 0;
        int shift = 0;
        for (;;) {
            unsigned char b;
            if (pos >= len || shift > 56) return -1;
            b = p[pos++];
            header |= (uint64_t)(b & 0x7F) << shift;
            if (!(b & 0x80)) break;
            shift += 7;
        }
        if (header & 1) {  /* bit-packed: header >> 1 groups of 8 levels, one byte each */
            uint64_t groups = header >> 1;
            if (groups == 0 || groups > (uint64_t)(len - pos)) return -1;
            for (uint64_t g = 0; g < groups && done < n; g++) {
                unsigned char byte = p[pos + (Py_ssize_t)g];
                for (int k = 0; k < 8 && done < n; k++, done++) {
                    if (byte >> k & 1) {
                        Py_ssize_t i = row + done;
                        valid[i >> 3] |= (unsigned char)(1u << (i & 7));
                        ones++;
                    }
                }
            }
            pos += (Py_ssize_t)groups;
        } else {  /* a run: header >> 1 times one value, in one byte */
            uint64_t count = header >> 1;
            unsigned char value;
            if (count == 0 || pos >= len) return -1;
            value = p[pos++];
            if (value > 1) return -1;
            if (count > (uint64_t)(n - done)) count = (uint64_t)(n - done);
            if (value) {
                for (uint64_t k = 0; k < count; k++) {
                    Py_ssize_t i = row + done + (Py_ssize_t)k;
                    valid[i >> 3] |= (unsigned char)(1u << (i & 7));
                }
                ones += (Py_ssize_t)count;
            }
            done += (Py_ssize_t)count;
        }
    }
    return pos == len ? ones : -1;
}

static PyObject *decode_fail(const char *why) {
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

/* A version 1 PLAIN data page of at most `rows` values whose body lies within `left` bytes. */
static int page_ok(const PageHead *h, int codec, Py_ssize_t left, Py_ssize_t rows) {
    if (h->type != 0 || !h->has_data || h->encoding != 0 || h->usize < 0 || h->csize < 0 || h->csize > left ||
        h->values < 0 || h->values > rows || (codec == 0 && h->csize != h->usize) || h->usize > (1 << 30) ||
        h->csize > INT32_MAX) {
        decode_fail("not a plain version 1 data page of this chunk");
        return 0;
    }
    return 1;
}

/* The page headers of data[start:end], each checked to be a version 1 PLAIN data page whose body lies within the
   chunk: the sum of their uncompressed sizes (a bound on the values' bytes), or -1. */
static Py_ssize_t chunk_bound(const unsigned char *base, Py_ssize_t start, Py_ssize_t end, int codec, Py_ssize_t rows) {
    Py_ssize_t total = 0, values = 0;
    while (start < end) {
        TReader t = {base, start, end};
        PageHead h;
        if (page_head(&t, &h)) return -1;
        start = t.pos;
        if (!page_ok(&h, codec, end - start, rows - values)) return -1;
        start += h.csize;
        values += h.values;
        total += h.usize;
        if (total > (Py_ssize_t)1 << 31) {
            decode_fail("a column chunk too large");
            return -1;
        }
    }
    if (values != rows) {
        decode_fail("the pages do not hold the chunk's rows");
        return -1;
    }
    return total;
}

static unsigned char *SCRATCH = NULL;  /* one decompressed page; kept between calls (the GIL is held) */
static Py_ssize_t SCRATCH_CAP = 0;
#define SCRATCH_KEEP ((Py_ssize_t)16 << 20)

static PyObject *column_bound(PyObject *self, PyObject *args) {
    Py_buffer in;
    Py_ssize_t start, end, rows, bound = -1;
    int codec;
    if (!PyArg_ParseTuple(args, "y*nnin", &in, &start, &end, &codec, &rows)) return NULL;
    if (start < 0 || end > in.len || start > end || rows < 0 || rows > (Py_ssize_t)1 << 30) {
        decode_fail("unsupported column chunk");
    } else {
        bound = chunk_bound(in.buf, start, end, codec, rows);
    }
    PyBuffer_Release(&in);
    return bound < 0 ? NULL : PyLong_FromSsize_t(bound);
}

static PyObject *decode_chunk(PyObject *self, PyObject *args) {
    Py_buffer in, vb, ob, xb;
    Py_ssize_t start, end, rows, row = 0, nulls = 0, data_len = 0, bound;
    int codec, kind, nullable;
    unsigned char *valid, *values;
    int32_t *offsets = NULL;
    PyObject *result = NULL;
    const unsigned char *base;
    PyObject *offsets_arg;
    if (!PyArg_ParseTuple(args, "y*nniiinw*Ow*", &in, &start, &end, &codec, &kind, &nullable, &rows, &vb,
                          &offsets_arg, &xb))
        return NULL;
    ob.obj = NULL;
    base = in.buf;
    if (offsets_arg != Py_None && PyObject_GetBuffer(offsets_arg, &ob, PyBUF_WRITABLE) < 0) goto done;
    if (start < 0 || end > in.len || start > end || rows < 0 || rows > (Py_ssize_t)1 << 30 ||
        (kind != 'l' && kind != 'b') || (codec != 0 && codec != 6)) {
        decode_fail("unsupported column chunk");
        goto done;
    }
    if (codec == 6 && !zstd_ready()) {
        decode_fail("no libzstd");
        goto done;
    }
    bound = kind == 'l' ? rows * 8 : xb.len;
    if (vb.len < (rows + 7) / 8 || xb.len < bound || (kind == 'b' && (ob.obj == NULL || ob.len < (rows + 1) * 4))) {
        decode_fail("buffers too small");
        goto done;
    }
    /* The Arrow buffers are written in place (the caller's, from Arrow's memory pool). */
    valid = vb.buf;
    values = xb.buf;
    memset(valid, 0, (size_t)(rows + 7) / 8);
    if (kind == 'b') offsets = ob.buf;
    while (start < end) {
        TReader t = {base, start, end};
        PageHead h;
        const unsigned char *page, *p, *q;
        Py_ssize_t n, present;
        if (page_head(&t, &h)) goto done;
        start = t.pos;
        if (!page_ok(&h, codec, end - start, rows - row)) goto done;
        if (codec != 0) {
            if (h.usize > SCRATCH_CAP) {
                unsigned char *grown = PyMem_Realloc(SCRATCH, (size_t)h.usize + 1);
                if (grown == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                SCRATCH = grown;
                SCRATCH_CAP = h.usize;
            }
            size_t got = zstd_decompress(ZSTD_CTX, SCRATCH, (size_t)h.usize, base + start, (size_t)h.csize);
            if (zstd_is_error(got) || got != (size_t)h.usize) {
                decode_fail("a page does not decompress to its size");
                goto done;
            }
            page = SCRATCH;
        } else {
            page = base + start;
        }
        start += h.csize;
        p = page;
        q = page + h.usize;
        n = (Py_ssize_t)h.values;
        if (nullable) {
            uint32_t len;
            if (h.def_encoding != 3 || q - p < 4) {
                decode_fail("definition levels are not RLE");
                goto done;
            }
            len = get_u32le(p);
            p += 4;
            if ((Py_ssize_t)len > q - p) {
                decode_fail("definition levels longer than the page");
                goto done;
            }
            present = def_levels(p, (Py_ssize_t)len, n, valid, row);
            if (present < 0) {
                decode_fail("definition levels do not decode");
                goto done;
            }
            p += len;
        } else {
            for (Py_ssize_t i = row; i < row + n; i++) valid[i >> 3] |= (unsigned char)(1u << (i & 7));
            present = n;
        }
        nulls += n - present;
        if (kind == 'l') {
            for (Py_ssize_t i = row; i < row + n; i++) {
                if (!(valid[i >> 3] >> (i & 7) & 1)) {
                    memset(values + i * 8, 0, 8);
                    continue;
                }
                if (q - p < 8) {
                    decode_fail("values shorter than the page says");
                    goto done;
                }
                memcpy(values + i * 8, p, 8);
                p += 8;
            }
        } else {
            for (Py_ssize_t i = row; i < row + n; i++) {
                uint32_t len;
                offsets[i] = (int32_t)data_len;
                if (!(valid[i >> 3] >> (i & 7) & 1)) continue;
                if (q - p < 4 || (len = get_u32le(p), (Py_ssize_t)len > q - p - 4) ||
                    data_len + (Py_ssize_t)len > bound) {
                    decode_fail("values shorter than the page says");
                    goto done;
                }
                memcpy(values + data_len, p + 4, len);
                data_len += len;
                p += 4 + len;
            }
        }
        if (p != q) {
            decode_fail("a page holds more than its values");
            goto done;
        }
        row += n;
    }
    if (row != rows) {
        decode_fail("the pages do not hold the chunk's rows");
        goto done;
    }
    if (kind == 'b') offsets[rows] = (int32_t)data_len;
    result = Py_BuildValue("(nn)", nulls, kind == 'l' ? rows * 8 : data_len);
done:
    if (SCRATCH_CAP > SCRATCH_KEEP) {  /* a page larger than pages are (or claiming to be): not kept for good */
        PyMem_Free(SCRATCH);
        SCRATCH = NULL;
        SCRATCH_CAP = 0;
    }
    if (ob.obj != NULL) PyBuffer_Release(&ob);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&in);
    return result;
}

/* -- decode and hash in one pass (verification of whole segments) ----------------------------------------------

   decode_hash decodes every column chunk of a segment's row groups page by page, as decode_chunk does (version 1
   PLAIN data pages, RLE definition levels of width 1, zstd or no compression), and hashes each row's event hash
   over its stored prev_hash (as event_hashes does) while the row's decompressed pages are still in the cache: page
   k of every column must hold the same rows (FORMAT.md 5, "Pages"), else ValueError and the caller takes the two
   steps apart. Only the columns asked for become Arrow buffers; the others (the payloads) are hashed where they
   were decompressed, never copied. String columns are checked to be UTF-8 value by value, as pyarrow's reader
   checks them. */

typedef struct {
    int kind, nullable, want;                  /* kind 'l' INT64, 'b' BYTE_ARRAY, 's' BYTE_ARRAY of UTF-8 */
    Py_ssize_t pos, end;                       /* the chunk of the current row group */
    int codec;
    unsigned char *scratch;                    /* the current page, decompressed */
    Py_ssize_t cap;
    const unsigned char **vp;                  /* per row of the page: its value (NULL for a null) and length */
    uint32_t *vl;
    Py_ssize_t vcap;
    PyObject *validity, *offsets, *values;     /* outputs (bytes), when wanted */
    Py_ssize_t nulls, data_len, bound;
    uint32_t vmax;                             /* the longest value of the current page */
} DCol;

/* Whether s[0:n] is UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static int utf8_ok(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        uint64_t w;
        if (i + 8 <= n && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ULL))) {
            i += 8;
            continue;
        }
        unsigned char c = s[i], c1;
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t k = c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
        if (k == 0 || n - i < k) return 0;
        for (Py_ssize_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        }
        c1 = s[i + 1];
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) ||
            (c == 0xF4 && c1 >= 0x90))
            return 0;
        i += k;
    }
    return 1;
}

/* utf8_valid(data) -> bool: whether data is UTF-8 as decode_hash checks it (the tests hold it to Python's). */
static PyObject *utf8_valid(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*:utf8_valid", &in)) return NULL;
    int ok = utf8_ok(in.buf, in.len);
    PyBuffer_Release(&in);
    return PyBool_FromLong(ok);
}

/* Page of column c at its position: header checked, decompressed, its n rows indexed (vp, vl) and, when wanted,
   written to the outputs at row `at`. 0, or -1 with ValueError / MemoryError set. */
static int dh_page(const unsigned char *base, DCol *c, Py_ssize_t left_rows, Py_ssize_t at, Py_ssize_t *rows_out) {
    TReader t = {base, c->pos, c->end};
    PageHead h;
    const unsigned char *page, *p, *q;
    if (c->pos >= c->end) {
        decode_fail("the pages do not hold the chunk's rows");
        return -1;
    }
    if (page_head(&t, &h)) {
        if (!PyErr_Occurred()) decode_fail("not a page header");
        return -1;
    }
    c->pos = t.pos;
    if (!page_ok(&h, c->codec, c->end - c->pos, left_rows)) return -1;
    if (h.values < 1) {
        decode_fail("an empty page");
        return -1;
    }
    if (c->codec != 0) {
        if (h.usize > c->cap) {
            unsigned char *grown = PyMem_Realloc(c->scratch, (size_t)h.usize + 1);
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            c->scratch = grown;
            c->cap = h.usize;
        }
        size_t got = zstd_decompress(ZSTD_CTX, c->scratch, (size_t)h.usize, base + c->pos, (size_t)h.csize);
        if (zstd_is_error(got) || got != (size_t)h.usize) {
            decode_fail("a page does not decompress to its size");
            return -1;
        }
        page = c->scratch;
    } else {
        page = base + c->pos;
    }
    c->pos += h.csize;
    p = page;
    q = page + h.usize;
    Py_ssize_t n = (Py_ssize_t)h.values;
    unsigned char bits[(1 << 16) / 8];  /* the page's validity; pages of more rows are refused below */
    if (n > (1 << 16)) {
        decode_fail("a page of too many rows");
        return -1;
    }
    if (n > c->vcap) {
        const unsigned char **vp = PyMem_Realloc(c->vp, sizeof(*vp) * (size_t)n);
        if (vp != NULL) c->vp = vp;
        uint32_t *vl = vp == NULL ? NULL : PyMem_Realloc(c->vl, sizeof(*vl) * (size_t)n);
        if (vl == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->vl = vl;
        c->vcap = n;
    }
    memset(bits, 0, (size_t)(n + 7) / 8);
    c->vmax = 0;
    if (c->nullable) {
        uint32_t len;
        if (h.def_encoding != 3 || q - p < 4) {
            decode_fail("definition levels are not RLE");
            return -1;
        }
        len = get_u32le(p);
        p += 4;
        if ((Py_ssize_t)len > q - p || def_levels(p, (Py_ssize_t)len, n, bits, 0) < 0) {
            decode_fail("definition levels do not decode");
            return -1;
        }
        p += len;
    } else {
        memset(bits, 0xff, (size_t)(n + 7) / 8);
    }
    unsigned char *valid = c->want ? (unsigned char *)PyBytes_AS_STRING(c->validity) : NULL;
    unsigned char *values = c->want ? (unsigned char *)PyBytes_AS_STRING(c->values) : NULL;
    int32_t *offsets = c->want && c->kind != 'l' ? (int32_t *)PyBytes_AS_STRING(c->offsets) : NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t r = at + i;
        if (!(bits[i >> 3] >> (i & 7) & 1)) {
            c->vp[i] = NULL;
            c->vl[i] = 0;
            c->nulls++;
            if (c->want) {
                if (c->kind == 'l') memset(values + 8 * r, 0, 8); else offsets[r] = (int32_t)c->data_len;
            }
            continue;
        }
        uint32_t len = 8;
        if (c->kind != 'l') {
            if (q - p < 4 || (len = get_u32le(p), (Py_ssize_t)len > q - p - 4)) {
                decode_fail("values shorter than the page says");
                return -1;
            }
            p += 4;
            if (c->kind == 's' && !utf8_ok(p, len)) {
                decode_fail("a string is not UTF-8");
                return -1;
            }
        } else if (q - p < 8) {
            decode_fail("values shorter than the page says");
            return -1;
        }
        c->vp[i] = p;
        c->vl[i] = len;
        c->vmax = len > c->vmax ? len : c->vmax;
        if (c->want) {
            valid[r >> 3] |= (unsigned char)(1u << (r & 7));
            if (c->kind == 'l') {
                memcpy(values + 8 * r, p, 8);
            } else {
                if (c->data_len + (Py_ssize_t)len > c->bound) {
                    decode_fail("values longer than their pages");
                    return -1;
                }
                offsets[r] = (int32_t)c->data_len;
                memcpy(values + c->data_len, p, len);
                c->data_len += len;
            }
        }
        p += len;
    }
    if (p != q) {
        decode_fail("a page holds more than its values");
        return -1;
    }
    *rows_out = n;
    return 0;
}

/* The bytes row i of the current pages adds to its hash input after the tag: for each column of `order` (hash
   kinds in `hk`), as event_hashes encodes it; the last column's value hashed where it is (*body) when it is long.
   Written at p unless p is NULL; returns the size. */
static size_t dh_head(DCol *cols, const Py_ssize_t *order, const char *hk, Py_ssize_t no, Py_ssize_t i,
                      unsigned char *p, const unsigned char **body, size_t *body_len) {
    size_t size = 0;
    *body = NULL;
    *body_len = 0;
    for (Py_ssize_t k = 0; k < no; k++) {
        const DCol *c = &cols[order[k]];
        const unsigned char *v = c->vp[i];
        uint32_t len = c->vl[i];
        if (hk[k] == 'i') {
            if (v == NULL) {
                if (p) memset(p + size, 0xff, 4);
                size += 4;
            } else {
                if (p) {
                    put_u32((char *)p + size, 8);
                    for (int b = 0; b < 8; b++) p[size + 4 + b] = v[7 - b];
                }
                size += 12;
            }
            continue;
        }
        if (hk[k] != 'r') {
            if (p) {
                if (v == NULL) memset(p + size, 0xff, 4); else put_u32((char *)p + size, len);
            }
            size += 4;
        }
        if (v == NULL) continue;
        if (k == no - 1 && len >= STREAM_BYTES) {
            *body = v;
            *body_len = len;
        } else {
            if (p && len) memcpy(p + size, v, len);
            size += len;
        }
    }
    return size;
}

#if SHA_NI_BUILT
/* One SHA-NI lane of decode_hash: the row it hashes, its bytes before the body written out in buf. */
typedef struct {
    unsigned char *buf;
    size_t cap;
    ni_message m;
    ni_state s;
    size_t b;
    unsigned char *out;
    int busy;
} dh_lane;

/* The event hashes of rows [0, n) of the current pages to out, 32 bytes a row: each row goes to whichever lane is
   free first, so that a lane is idle only at the end of the pages, not for the difference of every pair of rows.
   Each lane's buf holds at least the tag and the longest value of every hashed column with its prefix. */
SHA_NI_TARGET static void dh_lanes(DCol *cols, const Py_ssize_t *order, const char *hk, Py_ssize_t no, Py_ssize_t n,
                                   const unsigned char *tag, size_t tag_len, dh_lane *lanes, unsigned char *out) {
    Py_ssize_t next = 0;
    dh_lane *a = &lanes[0], *b = &lanes[1];
    for (;;) {
        for (int l = 0; l < 2; l++) {
            dh_lane *L = &lanes[l];
            if (!L->busy && next < n) {
                const unsigned char *body;
                size_t body_len;
                memcpy(L->buf, tag, tag_len);
                size_t head = tag_len + dh_head(cols, order, hk, no, next, L->buf + tag_len, &body, &body_len);
                ni_message_init(&L->m, L->buf, head, body, body_len);
                L->s = ni_init();
                L->b = 0;
                L->out = out + 32 * next++;
                L->busy = 1;
            }
        }
        if (a->busy && b->busy) {
            size_t k = a->m.blocks - a->b < b->m.blocks - b->b ? a->m.blocks - a->b : b->m.blocks - b->b;
            for (size_t i = 0; i < k; i++, a->b++, b->b++) {
                ni_block2(&a->s, &b->s, ni_block(&a->m, a->b), ni_block(&b->m, b->b));
            }
        } else if (a->busy || b->busy) { /* no rows left for the other lane */
            dh_lane *L = a->busy ? a : b;
            for (; L->b < L->m.blocks; L->b++) {
                ni_block1(&L->s, ni_block(&L->m, L->b));
            }
        } else {
            return;
        }
        for (int l = 0; l < 2; l++) {
            if (lanes[l].busy && lanes[l].b == lanes[l].m.blocks) {
                ni_digest(lanes[l].s, lanes[l].out);
                lanes[l].busy = 0;
            }
        }
    }
}
#endif

static PyObject *decode_hash(PyObject *self, PyObject *args) {
    Py_buffer in, tag;
    PyObject *groups, *columns, *order_arg, *result = NULL, *hashes = NULL, *outs = NULL;
    DCol *cols = NULL;
    Py_ssize_t ncols = 0, no = 0, total = 0, *order = NULL, *spans = NULL;
    char *hk = NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
#if SHA_NI_BUILT
    dh_lane lanes[2] = {{0}};
#endif
    if (need_sha() < 0 || !PyArg_ParseTuple(args, "y*O!O!O!y*:decode_hash", &in, &PyTuple_Type, &groups,
                                            &PyTuple_Type, &columns, &PyTuple_Type, &order_arg, &tag))
        return NULL;
    const unsigned char *base = in.buf;
    ncols = PyTuple_GET_SIZE(columns);
    no = PyTuple_GET_SIZE(order_arg);
    Py_ssize_t ngroups = PyTuple_GET_SIZE(groups);
    if (ncols < 1 || ncols > 4096 || no > ncols) {
        decode_fail("too many or too few columns");
        goto done;
    }
    if (!zstd_ready()) {
        decode_fail("no libzstd");
        goto done;
    }
    cols = PyMem_Calloc((size_t)ncols, sizeof(DCol));
    order = PyMem_Calloc((size_t)(no ? no : 1), sizeof(Py_ssize_t));
    hk = PyMem_Calloc((size_t)(no ? no : 1), 1);
    if (cols == NULL || order == NULL || hk == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        DCol *d = &cols[c];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(columns, c), "iii:decode_hash column", &d->kind, &d->nullable,
                              &d->want))
            goto done;
        if (d->kind != 'l' && d->kind != 'b' && d->kind != 's') {
            decode_fail("a column's kind is l, b or s");
            goto done;
        }
    }
    for (Py_ssize_t k = 0; k < no; k++) {
        int kind;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(order_arg, k), "ni:decode_hash order", &order[k], &kind)) goto done;
        hk[k] = (char)kind;
        if (order[k] < 0 || order[k] >= ncols || strchr("rsbi", kind) == NULL || kind == 0 ||
            (kind == 'i') != (cols[order[k]].kind == 'l')) {
            decode_fail("a hashed column is out of range or of another kind");
            goto done;
        }
    }
    /* The rows of every row group, and the bytes each wanted column's values take at most (its pages checked). */
    spans = PyMem_Calloc((size_t)(ngroups ? ngroups : 1) * (size_t)(ncols + 1), 3 * sizeof(Py_ssize_t));
    if (spans == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        PyObject *group = PyTuple_GET_ITEM(groups, g), *chunks;
        Py_ssize_t rows;
        if (!PyArg_ParseTuple(group, "nO!:decode_hash group", &rows, &PyTuple_Type, &chunks)) goto done;
        if (PyTuple_GET_SIZE(chunks) != ncols || rows < 0 || rows > (Py_ssize_t)1 << 30 || total > ((Py_ssize_t)1 << 31) - rows) {
            decode_fail("a row group of other columns or too many rows");
            goto done;
        }
        for (Py_ssize_t c = 0; c < ncols; c++) {
            Py_ssize_t start, end;
            int codec;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(chunks, c), "nni:decode_hash chunk", &start, &end, &codec))
                goto done;
            if (start < 0 || end > in.len || start > end || (codec != 0 && codec != 6)) {
                decode_fail("unsupported column chunk");
                goto done;
            }
            Py_ssize_t *span = spans + 3 * (g * (ncols + 1) + c + 1);
            span[0] = start, span[1] = end, span[2] = codec;
            if (cols[c].want && cols[c].kind != 'l') {
                Py_ssize_t b = chunk_bound(base, start, end, codec, rows);
                if (b < 0) {
                    if (!PyErr_Occurred()) decode_fail("a column chunk that does not decode");
                    goto done;
                }
                cols[c].bound += b;
                if (cols[c].bound > INT32_MAX) {
                    decode_fail("a column too large");
                    goto done;
                }
            }
        }
        spans[3 * g * (ncols + 1)] = rows;
        total += rows;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        DCol *d = &cols[c];
        if (!d->want) continue;
        d->validity = PyBytes_FromStringAndSize(NULL, (total + 7) / 8);
        d->values = PyBytes_FromStringAndSize(NULL, d->kind == 'l' ? 8 * total : d->bound);
        d->offsets = d->kind == 'l' ? (Py_INCREF(Py_None), Py_None) : PyBytes_FromStringAndSize(NULL, 4 * (total + 1));
        if (d->validity == NULL || d->values == NULL || d->offsets == NULL) goto done;
        memset(PyBytes_AS_STRING(d->validity), 0, (size_t)(total + 7) / 8);
    }
    hashes = PyBytes_FromStringAndSize(NULL, 32 * total);
    if (hashes == NULL) goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(hashes);
    Py_ssize_t at = 0;
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        const Py_ssize_t *span = spans + 3 * g * (ncols + 1);
        Py_ssize_t rows = span[0], row = 0;
        for (Py_ssize_t c = 0; c < ncols; c++) {
            cols[c].pos = span[3 * (c + 1)];
            cols[c].end = span[3 * (c + 1) + 1];
            cols[c].codec = (int)span[3 * (c + 1) + 2];
        }
        while (row < rows) {
            Py_ssize_t n = 0;
            for (Py_ssize_t c = 0; c < ncols; c++) {
                Py_ssize_t m;
                if (dh_page(base, &cols[c], rows - row, at + row, &m) < 0) goto done;
                if (c == 0) {
                    n = m;
                } else if (m != n) {
                    decode_fail("the columns' pages hold other rows");
                    goto done;
                }
            }
#if SHA_NI_BUILT
            if (sha_ni_on()) {
                size_t need = (size_t)tag.len;
                for (Py_ssize_t k = 0; k < no; k++) {
                    need += 12 + (size_t)cols[order[k]].vmax;
                }
                for (int l = 0; l < 2; l++) {
                    if (need > lanes[l].cap) {
                        unsigned char *grown = PyMem_Realloc(lanes[l].buf, 2 * need);
                        if (grown == NULL) {
                            PyErr_NoMemory();
                            goto done;
                        }
                        lanes[l].buf = grown;
                        lanes[l].cap = 2 * need;
                    }
                }
                dh_lanes(cols, order, hk, no, n, tag.buf, (size_t)tag.len, lanes, out + 32 * (at + row));
                row += n;
                continue;
            }
#endif
            for (Py_ssize_t i = 0; i < n; i += 2) {
                Py_ssize_t j = i + 1 < n ? i + 1 : i; /* an odd last row is hashed twice */
                const unsigned char *ba, *bb;
                size_t bla, blb;
                size_t la = (size_t)tag.len + dh_head(cols, order, hk, no, i, NULL, &ba, &bla);
                size_t lb = (size_t)tag.len + dh_head(cols, order, hk, no, j, NULL, &bb, &blb);
                if (la + lb > cap) {
                    unsigned char *grown = PyMem_Realloc(buf, 2 * (la + lb));
                    if (grown == NULL) {
                        PyErr_NoMemory();
                        goto done;
                    }
                    buf = grown;
                    cap = 2 * (la + lb);
                }
                memcpy(buf, tag.buf, (size_t)tag.len);
                dh_head(cols, order, hk, no, i, buf + tag.len, &ba, &bla);
                memcpy(buf + la, tag.buf, (size_t)tag.len);
                dh_head(cols, order, hk, no, j, buf + la + tag.len, &bb, &blb);
                sha256_pair(buf, la, ba, bla, buf + la, lb, bb, blb, out + 32 * (at + row + i),
                            out + 32 * (at + row + j));
            }
            row += n;
        }
        for (Py_ssize_t c = 0; c < ncols; c++) {
            if (cols[c].pos != cols[c].end) {
                decode_fail("a chunk holds more than its rows");
                goto done;
            }
        }
        at += rows;
    }
    outs = PyTuple_New(ncols);
    if (outs == NULL) goto done;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        DCol *d = &cols[c];
        PyObject *item;
        if (!d->want) {
            Py_INCREF(Py_None);
            PyTuple_SET_ITEM(outs, c, Py_None);
            continue;
        }
        if (d->kind != 'l') {
            ((int32_t *)PyBytes_AS_STRING(d->offsets))[total] = (int32_t)d->data_len;
            if (_PyBytes_Resize(&d->values, d->data_len) < 0) goto done;
        }
        item = Py_BuildValue("(OnOO)", d->nulls ? d->validity : Py_None, d->nulls, d->offsets, d->values);
        if (item == NULL) goto done;
        PyTuple_SET_ITEM(outs, c, item);
    }
    result = PyTuple_Pack(2, hashes, outs);
done:
    if (cols != NULL) {
        for (Py_ssize_t c = 0; c < ncols; c++) {
            PyMem_Free(cols[c].scratch);
            PyMem_Free(cols[c].vp);
            PyMem_Free(cols[c].vl);
            Py_XDECREF(cols[c].validity);
            Py_XDECREF(cols[c].offsets);
            Py_XDECREF(cols[c].values);
        }
        PyMem_Free(cols);
    }
    PyMem_Free(order);
    PyMem_Free(spans);
    PyMem_Free(hk);
    PyMem_Free(buf);
#if SHA_NI_BUILT
    PyMem_Free(lanes[0].buf);
    PyMem_Free(lanes[1].buf);
#endif
    Py_XDECREF(hashes);
    Py_XDECREF(outs);
    PyBuffer_Release(&tag);
    PyBuffer_Release(&in);
    return result;
}

static PyMethodDef methods[] = {
    {"canonical_json", canonical_json, METH_VARARGS,
     "canonical_json(value, limit) -> bytes | None: the canonical JSON of value, or None (ask the Python path)"},
    {"encode_fields", encode_fields, METH_VARARGS,
     "encode_fields(values, kinds) -> bytes: the canonical field bytes of values (kinds: i, s, b per field)"},
    {"decode_fields", decode_fields, METH_VARARGS,
     "decode_fields(data, kinds, nullable) -> (values, used) | None: encode_fields parsed (None: ask the Python path)"},
    {"use_libcrypto", use_libcrypto, METH_VARARGS,
     "use_libcrypto(path) -> bool: take SHA-256 from the libcrypto of the loaded module at path"},
    {"sha256_rows", sha256_rows, METH_VARARGS, "sha256_rows(data, offsets) -> bytes: 32 bytes per row"},
    {"merkle_leaves", merkle_leaves, METH_VARARGS, "merkle_leaves(hashes) -> bytes: SHA-256(0x00 || h) of each"},
    {"block_roots", block_roots, METH_VARARGS, "block_roots(leaves, block) -> bytes: the MTH of each run"},
    {"uuid7", uuid7, METH_NOARGS, "uuid7() -> str: a UUIDv7 (random bits from getrandom, pooled)"},
    {"check_fields", check_fields, METH_VARARGS,
     "check_fields(fields, spec) -> (values, size) | None: an event's stored fields, the common case"},
    {"hmac_states", hmac_states, METH_VARARGS, "hmac_states(key, prefix) -> bytes: HMAC-SHA256's two contexts"},
    {"chain_frame", chain_frame, METH_VARARGS,
     "chain_frame(values_lists, kinds, prev, tag, states, crc32) -> (frame, last hash): Chain and Frame in one"},
    {"event_hashes", event_hashes, METH_VARARGS,
     "event_hashes(n, tag, columns) -> bytes: SHA-256(tag || each column's bytes) of each row of Arrow columns"},
    {"sha_ni", sha_ni, METH_O,
     "sha_ni(on) -> bool: whether event_hashes and merkle_blocks hash two messages at once with SHA-NI (None: ask)"},
    {"merkle_blocks", merkle_blocks, METH_VARARGS,
     "merkle_blocks(data, block[, whole]) -> (block roots, root[, SHA-256 of whole]): the MTH of each run of leaves, "
     "and of all of them"},
    {"thrift_page_locations", thrift_page_locations, METH_VARARGS,
     "thrift_page_locations(data, pos, end) -> bytes: an OffsetIndex's (offset, size, first row) as int64 triples"},
    {"column_bound", column_bound, METH_VARARGS,
     "column_bound(data, start, end, codec, rows) -> int: the values' bytes at most, pages checked"},
    {"decode_chunk", decode_chunk, METH_VARARGS,
     "decode_chunk(data, start, end, codec, kind, nullable, rows, validity, offsets, values) -> (nulls, length)"},
    {"decode_hash", decode_hash, METH_VARARGS,
     "decode_hash(data, groups, columns, order, tag) -> (hashes, buffers): decode_chunk and event_hashes in one pass"},
    {"utf8_valid", utf8_valid, METH_VARARGS, "utf8_valid(data) -> bool: whether data is UTF-8 (RFC 3629)"},
    {"zstd_available", zstd_available, METH_NOARGS, "zstd_available() -> bool: libzstd was loaded"},
    {"page_offsets", page_offsets, METH_VARARGS,
     "page_offsets(raw, spans, page_rows, rows) -> bytes: a row group's columns' page offsets, checked"},
    {"footer_layout", footer_layout, METH_VARARGS,
     "footer_layout(footer) -> (head, ((rows, packed int64 per column chunk), ...), key-value metadata): what a "
     "page reader needs"},
    {"thrift_decode", thrift_decode, METH_VARARGS,
     "thrift_decode(data, pos, end) -> (struct, end): a Thrift compact struct (raises ValueError on bad bytes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wormjournal._native", "The write path's hot loops in C (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (pthread_atfork(NULL, NULL, pool_forget) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    return PyModule_Create(&module);
}
