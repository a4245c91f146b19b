/*
 * _telemetry_speedups: the Python client's event encoder in C, optional.
 *
 * telemetry_client.py is complete without it; when this module is importable
 * (built with the project, or by pip where a compiler and Python's headers
 * exist) the client encodes with it, about ten times faster. It gives the
 * same bytes and the same errors as the Python encoder (a test compares the
 * two on many values): the built-in types are encoded here, anything else is
 * handed to the Python module's _convert and its result encoded; map keys
 * that are not str become str(key); containers deeper than MAX_DEPTH and
 * ints outside int64/uint64 raise EncodeError.
 *
 *   configure(convert, EncodeError, max_depth, max_name_bytes)
 *   packb(obj, depth=0) -> bytes (depth: how deep obj is nested already)
 *   encode_event(event, properties, distinct_id, chunk) -> bytes or None
 *       the event map with the time now and a new UUIDv7, when event is a
 *       str, properties a dict or None, distinct_id and chunk a str or None;
 *       None for anything else (the Python encoder handles it).
 *
 * Everything runs under the GIL; a callback (a key's __str__, _convert) may
 * run Python code, so every object used across one is referenced.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static PyObject *convert_function; /* telemetry_client._convert */
static PyObject *encode_error;     /* telemetry_client.EncodeError */
static int max_depth = 32;
static Py_ssize_t max_name_bytes = 200;

/* -- the output buffer ---------------------------------------------------- */

struct out {
    char *data;
    size_t len, cap;
    char first[1024]; /* most events fit: no allocation */
};

static void out_init(struct out *o)
{
    o->data = o->first;
    o->len = 0;
    o->cap = sizeof o->first;
}

static void out_free(struct out *o)
{
    if (o->data != o->first)
        PyMem_Free(o->data);
}

static int out_reserve(struct out *o, size_t more)
{
    if (o->cap - o->len >= more)
        return 0;
    size_t cap = o->cap;
    while (cap - o->len < more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Malloc(cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(data, o->data, o->len);
    out_free(o);
    o->data = data;
    o->cap = cap;
    return 0;
}

static int out_put(struct out *o, const void *bytes, size_t n)
{
    if (out_reserve(o, n) < 0)
        return -1;
    memcpy(o->data + o->len, bytes, n);
    o->len += n;
    return 0;
}

/* code, then value in n big-endian bytes */
static int out_code_be(struct out *o, unsigned code, uint64_t value, int n)
{
    unsigned char b[9];
    b[0] = (unsigned char)code;
    for (int i = n; i >= 1; i--, value >>= 8)
        b[i] = (unsigned char)(value & 0xff);
    return out_put(o, b, (size_t)n + 1);
}

/* -- msgpack -------------------------------------------------------------- */

/* A header for n elements or bytes: fix (if any) below fix_limit, then the
 * 8-bit (code8, 0 if none), 16-bit and 32-bit forms. */
static int out_header(struct out *o, size_t n, unsigned fix, size_t fix_limit, unsigned code8,
                      unsigned code16, const char *what)
{
    if (fix_limit > 0 && n < fix_limit) {
        unsigned char b = (unsigned char)(fix | n);
        return out_put(o, &b, 1);
    }
    if (code8 != 0 && n < 0x100)
        return out_code_be(o, code8, n, 1);
    if (n < 0x10000)
        return out_code_be(o, code16, n, 2);
    if (n <= 0xffffffffu)
        return out_code_be(o, code16 + 1, n, 4);
    PyErr_Format(encode_error, "%s of %zu elements or bytes is too long for msgpack", what, n);
    return -1;
}

static int pack_utf8(struct out *o, const char *text, Py_ssize_t size)
{
    if (out_header(o, (size_t)size, 0xa0, 32, 0xd9, 0xda, "str") < 0)
        return -1;
    return out_put(o, text, (size_t)size);
}

static int pack_str(struct out *o, PyObject *str)
{
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(str, &size);
    return text == NULL ? -1 : pack_utf8(o, text, size);
}

static int pack_int(struct out *o, PyObject *obj)
{
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(obj);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(encode_error, "int %S is larger than uint64", obj);
            return -1;
        }
        return out_code_be(o, 0xcf, u, 8);
    }
    if (overflow < 0) {
        PyErr_Format(encode_error, "int %S is smaller than int64", obj);
        return -1;
    }
    if (n >= 0) {
        if (n < 0x80) {
            unsigned char b = (unsigned char)n;
            return out_put(o, &b, 1);
        }
        if (n < 0x100)
            return out_code_be(o, 0xcc, (uint64_t)n, 1);
        if (n < 0x10000)
            return out_code_be(o, 0xcd, (uint64_t)n, 2);
        if (n < 0x100000000LL)
            return out_code_be(o, 0xce, (uint64_t)n, 4);
        return out_code_be(o, 0xcf, (uint64_t)n, 8);
    }
    if (n >= -32) {
        unsigned char b = (unsigned char)(n & 0xff);
        return out_put(o, &b, 1);
    }
    if (n >= -0x80)
        return out_code_be(o, 0xd0, (uint64_t)n, 1);
    if (n >= -0x8000)
        return out_code_be(o, 0xd1, (uint64_t)n, 2);
    if (n >= -0x80000000LL)
        return out_code_be(o, 0xd2, (uint64_t)n, 4);
    return out_code_be(o, 0xd3, (uint64_t)n, 8);
}

static int pack(struct out *o, PyObject *obj, int depth);

/* A map's or an array's header; the depth of its elements, or -1. */
static int container_header(struct out *o, Py_ssize_t n, int depth, int is_map)
{
    if (depth >= max_depth) {
        PyErr_Format(encode_error, "nested deeper than %d levels", max_depth);
        return -1;
    }
    if (out_header(o, (size_t)n, is_map ? 0x80 : 0x90, 16, 0, is_map ? 0xde : 0xdc,
                   is_map ? "map" : "array") < 0)
        return -1;
    return depth + 1;
}

static int size_changed(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size during encoding", what);
    return -1;
}

static int pack_key(struct out *o, PyObject *key)
{
    if (PyUnicode_CheckExact(key))
        return pack_str(o, key);
    PyObject *text = PyObject_Str(key);
    if (text == NULL)
        return -1;
    int rc = pack(o, text, 0);
    Py_DECREF(text);
    return rc;
}

static int pack_dict(struct out *o, PyObject *dict, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(dict), pos = 0;
    depth = container_header(o, n, depth, 1);
    if (depth < 0)
        return -1;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        int rc = pack_key(o, key);
        if (rc == 0)
            rc = pack(o, value, depth);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            return -1;
        if (PyDict_GET_SIZE(dict) != n)
            return size_changed("dict");
    }
    return 0;
}

static int pack_sequence(struct out *o, PyObject *seq, int depth)
{
    int is_list = PyList_CheckExact(seq);
    Py_ssize_t n = is_list ? PyList_GET_SIZE(seq) : PyTuple_GET_SIZE(seq);
    depth = container_header(o, n, depth, 0);
    if (depth < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (is_list && PyList_GET_SIZE(seq) != n)
            return size_changed("list");
        PyObject *item = is_list ? PyList_GET_ITEM(seq, i) : PyTuple_GET_ITEM(seq, i);
        Py_INCREF(item);
        int rc = pack(o, item, depth);
        Py_DECREF(item);
        if (rc < 0)
            return -1;
    }
    return is_list && PyList_GET_SIZE(seq) != n ? size_changed("list") : 0;
}

static int pack_double(struct out *o, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return out_code_be(o, 0xcb, bits, 8);
}

/* bytes, bytearray, memoryview (and their subclasses) as bin */
static int pack_binary(struct out *o, PyObject *obj)
{
    PyObject *bytes = PyBytes_CheckExact(obj) ? (Py_INCREF(obj), obj) : PyObject_Bytes(obj);
    if (bytes == NULL)
        return -1;
    Py_ssize_t size = PyBytes_GET_SIZE(bytes);
    int rc = out_header(o, (size_t)size, 0, 0, 0xc4, 0xc5, "bytes");
    if (rc == 0)
        rc = out_put(o, PyBytes_AS_STRING(bytes), (size_t)size);
    Py_DECREF(bytes);
    return rc;
}

static int pack(struct out *o, PyObject *obj, int depth)
{
    if (PyUnicode_CheckExact(obj))
        return pack_str(o, obj);
    if (PyDict_CheckExact(obj))
        return pack_dict(o, obj, depth);
    if (PyLong_CheckExact(obj))
        return pack_int(o, obj);
    if (obj == Py_None || obj == Py_True || obj == Py_False) {
        unsigned char b = obj == Py_None ? 0xc0 : obj == Py_True ? 0xc3 : 0xc2;
        return out_put(o, &b, 1);
    }
    if (PyFloat_CheckExact(obj))
        return pack_double(o, PyFloat_AS_DOUBLE(obj));
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj))
        return pack_sequence(o, obj, depth);
    if (PyBytes_Check(obj) || PyByteArray_Check(obj) || PyMemoryView_Check(obj))
        return pack_binary(o, obj);
    if (convert_function == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_telemetry_speedups is not configured");
        return -1;
    }
    PyObject *plain = PyObject_CallOneArg(convert_function, obj);
    if (plain == NULL)
        return -1;
    if (Py_EnterRecursiveCall(" while encoding") != 0) {
        Py_DECREF(plain);
        return -1;
    }
    int rc = pack(o, plain, depth);
    Py_LeaveRecursiveCall();
    Py_DECREF(plain);
    return rc;
}

static PyObject *out_bytes(struct out *o, int rc)
{
    PyObject *bytes = rc < 0 ? NULL : PyBytes_FromStringAndSize(o->data, (Py_ssize_t)o->len);
    out_free(o);
    return bytes;
}

/* -- UUIDv7 --------------------------------------------------------------- */

#define RANDOM_POOL_BYTES 4000 /* one getrandom() per 400 uuids */
static unsigned char random_pool[RANDOM_POOL_BYTES];
static size_t random_pos = RANDOM_POOL_BYTES;

/* Forks in this process's line, counted in each child by the at-fork hook
 * (which any fork() through the C library runs, a C extension's too): the
 * client compares it to tell it is in a child, without a system call. */
static unsigned long forks_seen;

/* In a forked child: it must not draw the random bytes its parent draws
 * too. */
static void at_fork_in_child(void)
{
    random_pos = RANDOM_POOL_BYTES;
    forks_seen++;
}

static int random10(unsigned char out[10])
{
    if (random_pos + 10 > RANDOM_POOL_BYTES) {
        size_t got = 0;
        while (got < RANDOM_POOL_BYTES) {
            ssize_t n = getrandom(random_pool + got, RANDOM_POOL_BYTES - got, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
            got += (size_t)n;
        }
        random_pos = 0;
    }
    memcpy(out, random_pool + random_pos, 10);
    random_pos += 10;
    return 0;
}

/* 48-bit Unix milliseconds, version 7, 12 random bits, the RFC 9562
 * variant, 62 random bits: the same layout as telemetry_client.uuid7 */
static int uuid7_text(uint64_t ms, char text[37])
{
    unsigned char r[10];
    if (random10(r) < 0)
        return -1;
    ms &= 0xffffffffffffULL;
    unsigned rand_a = (unsigned)r[0] << 4 | r[1] >> 4;
    unsigned rand_b_high = ((unsigned)r[2] << 8 | r[3]) & 0x3fff;
    uint64_t rand_b_low = 0;
    for (int i = 4; i < 10; i++)
        rand_b_low = rand_b_low << 8 | r[i];
    snprintf(text, 37, "%08llx-%04x-%04x-%04x-%012llx", (unsigned long long)(ms >> 16),
             (unsigned)(ms & 0xffff), 0x7000 | rand_a, 0x8000 | rand_b_high,
             (unsigned long long)rand_b_low);
    return 0;
}

/* -- the module's functions ----------------------------------------------- */

static PyObject *speedups_configure(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *convert, *error;
    int depth;
    Py_ssize_t name_bytes;
    if (!PyArg_ParseTuple(args, "OOin:configure", &convert, &error, &depth, &name_bytes))
        return NULL;
    if (!PyCallable_Check(convert) || !PyExceptionClass_Check(error) || depth < 1 ||
        depth > 1000 || name_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "configure(convert, EncodeError, max_depth 1..1000, "
                                          "max_name_bytes >= 1)");
        return NULL;
    }
    Py_INCREF(convert);
    Py_XSETREF(convert_function, convert);
    Py_INCREF(error);
    Py_XSETREF(encode_error, error);
    max_depth = depth;
    max_name_bytes = name_bytes;
    Py_RETURN_NONE;
}

static PyObject *speedups_packb(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    long depth = 0;
    if (nargs < 1 || nargs > 2 || (nargs == 2 && (depth = PyLong_AsLong(args[1])) < 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "packb(obj, depth=0), depth >= 0");
        return NULL;
    }
    struct out o;
    out_init(&o);
    return out_bytes(&o, pack(&o, args[0], depth > max_depth ? max_depth : (int)depth));
}

/* the UTF-8 of a name (event, distinct_id) checked for size, or NULL */
static const char *name_utf8(PyObject *name, const char *what, Py_ssize_t *size)
{
    const char *text = PyUnicode_AsUTF8AndSize(name, size);
    if (text != NULL && (*size < 1 || *size > max_name_bytes)) {
        PyErr_Format(encode_error, "%s is %zd bytes, not 1 to %zd", what, *size, max_name_bytes);
        return NULL;
    }
    return text;
}

static int pack_field(struct out *o, const char *key, PyObject *value)
{
    if (value == Py_None)
        return 0;
    if (pack_utf8(o, key, (Py_ssize_t)strlen(key)) < 0)
        return -1;
    return pack(o, value, 1);
}

static PyObject *speedups_encode_event(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "encode_event(event, properties, distinct_id, chunk)");
        return NULL;
    }
    PyObject *event = args[0], *properties = args[1], *distinct_id = args[2], *chunk = args[3];
    if (!PyUnicode_CheckExact(event) || (properties != Py_None && !PyDict_CheckExact(properties)) ||
        (distinct_id != Py_None && !PyUnicode_CheckExact(distinct_id)) ||
        (chunk != Py_None && !PyUnicode_CheckExact(chunk)))
        Py_RETURN_NONE;
    Py_ssize_t event_size, id_size = 0;
    const char *event_text = name_utf8(event, "event", &event_size);
    if (event_text == NULL)
        return NULL;
    if (distinct_id != Py_None && name_utf8(distinct_id, "distinct_id", &id_size) == NULL)
        return NULL;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    char uuid[37];
    if (uuid7_text(ms, uuid) < 0)
        return NULL;
    struct out o;
    out_init(&o);
    unsigned char head = (unsigned char)(0x83 + (properties != Py_None) +
                                         (distinct_id != Py_None) + (chunk != Py_None));
    int rc = out_put(&o, &head, 1);
    if (rc == 0)
        rc = pack_utf8(&o, "event", 5);
    if (rc == 0)
        rc = pack_utf8(&o, event_text, event_size);
    if (rc == 0)
        rc = pack_utf8(&o, "timestamp", 9);
    if (rc == 0)
        rc = ms < 0x100000000ULL ? out_code_be(&o, 0xce, ms, 4) : out_code_be(&o, 0xcf, ms, 8);
    if (rc == 0)
        rc = pack_utf8(&o, "uuid", 4);
    if (rc == 0)
        rc = pack_utf8(&o, uuid, 36);
    if (rc == 0)
        rc = pack_field(&o, "properties", properties);
    if (rc == 0)
        rc = pack_field(&o, "distinct_id", distinct_id);
    if (rc == 0)
        rc = pack_field(&o, "chunk", chunk);
    return out_bytes(&o, rc);
}

static PyObject *speedups_forks(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromUnsignedLong(forks_seen);
}

static PyMethodDef speedups_methods[] = {
    {"configure", speedups_configure, METH_VARARGS,
     "configure(convert, EncodeError, max_depth, max_name_bytes)"},
    {"packb", (PyCFunction)(void (*)(void))speedups_packb, METH_FASTCALL,
     "packb(obj, depth=0) -> bytes, as telemetry_client.packb (depth: of obj's container)"},
    {"encode_event", (PyCFunction)(void (*)(void))speedups_encode_event, METH_FASTCALL,
     "encode_event(event, properties, distinct_id, chunk) -> bytes, or None to use Python"},
    {"forks", speedups_forks, METH_NOARGS,
     "forks() -> int: fork()s in this process's line (it changes in a forked child)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "_telemetry_speedups",
    "The Python client's event encoder in C (optional; telemetry_client uses it if present).",
    -1, speedups_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__telemetry_speedups(void)
{
    static int at_fork_registered;
    if (!at_fork_registered) {
        if (pthread_atfork(NULL, NULL, at_fork_in_child) != 0)
            return PyErr_NoMemory();
        at_fork_registered = 1;
    }
    return PyModule_Create(&speedups_module);
}
