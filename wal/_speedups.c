/*
 * wal._speedups: optional C accelerator for the WAL's entry framing.
 *
 * The pure-Python reference is wal/framing.py (_encode_fixed); this module must produce
 * byte-identical frames and the same running CRC, and refuse (ValueError) every batch the
 * reference refuses, before writing anything, so that the caller can fall back to the
 * msgpack path, which names the bad entry.
 *
 * Frame:   u64 LE length word (low 56 bits = record length, top byte 0x80|pad if pad)
 *          record = crc u32 LE | type u8 (2) | payload, then pad zero bytes to 8-alignment
 * Payload: 94 ce <index u32 BE> ce <term u32 BE> cc <type u8>
 *          c5 <len u16 BE> (data < 64 KiB) or c6 <len u32 BE>, then the data
 * CRC:     crc = crc32c(payload, crc ^ 2), chained over the batch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#ifndef Py_T_OBJECT_EX /* before 3.12 these live in structmember.h */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

#if defined(__x86_64__) && defined(__GNUC__) /* elsewhere: the table-driven path only */
#include <nmmintrin.h>
#define WAL_HAVE_SSE42_PATH 1
#else
#define WAL_HAVE_SSE42_PATH 0
#endif

#define ENTRY_RECORD_TYPE 2
#define RECORD_HEADER_SIZE 5 /* crc u32 + type u8 */
#define PREFIX16_SIZE 16     /* payload header with bin16 */
#define PREFIX32_SIZE 18     /* payload header with bin32 */
#define BIN16_LIMIT 0x10000u
#define CRC_GROUP_BYTES 16384 /* see encode_fixed */

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ---------------------------- */

static uint32_t crc_table[8][256];

static void
crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

/* Both paths take and return the raw (pre-inverted) register value. */
static uint32_t
crc_update_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        /* byte-wise loads: endian-independent, and compilers fuse them into one load */
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                      (uint32_t)p[7] << 24;
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
              crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
              crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if WAL_HAVE_SSE42_PATH
/* The crc32 instruction has a latency of 3 cycles but a throughput of 1 per cycle, so one
 * chain runs at a third of the speed: blocks are hashed as three interleaved lanes, the
 * first from the running value and the others from 0, then joined by linearity,
 * crc(r, A.B) = crc(0, B) ^ zeros(crc(r, A), len(B)), with zeros() for each lane length
 * from a table. Three lane lengths keep short payloads (256-byte entries) on the fast path. */
#define LANE_LONG 512
#define LANE_MID 64
#define LANE_SHORT 16
static uint32_t zeros_long[4][256], zeros_mid[4][256], zeros_short[4][256];

static void
zeros_init(uint32_t z[4][256], size_t len)
{
    static const unsigned char zero[LANE_LONG];
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++)
            z[k][b] = crc_update_sw(b << (8 * k), zero, len);
}

static inline uint32_t
zeros_shift(uint32_t z[4][256], uint32_t crc)
{
    return z[0][crc & 0xFF] ^ z[1][(crc >> 8) & 0xFF] ^ z[2][(crc >> 16) & 0xFF] ^
           z[3][crc >> 24];
}

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8); /* unaligned loads are cheap on x86 */
    return w;
}

__attribute__((target("sse4.2"))) static inline uint32_t
crc_3way(uint32_t crc, const unsigned char *p, size_t lane, uint32_t z[4][256])
{
    uint64_t a = crc, b = 0, c = 0;
    for (size_t i = 0; i < lane; i += 8) {
        a = _mm_crc32_u64(a, load64(p + i));
        b = _mm_crc32_u64(b, load64(p + lane + i));
        c = _mm_crc32_u64(c, load64(p + 2 * lane + i));
    }
    return zeros_shift(z, zeros_shift(z, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
}

/* Compiled for SSE4.2 on its own so the module itself needs no -msse4.2; only called after
 * the runtime CPU check. */
__attribute__((target("sse4.2"))) static uint32_t
crc_update_hw(uint32_t crc, const unsigned char *p, size_t n)
{
    for (; n >= 3 * LANE_LONG; p += 3 * LANE_LONG, n -= 3 * LANE_LONG)
        crc = crc_3way(crc, p, LANE_LONG, zeros_long);
    for (; n >= 3 * LANE_MID; p += 3 * LANE_MID, n -= 3 * LANE_MID)
        crc = crc_3way(crc, p, LANE_MID, zeros_mid);
    for (; n >= 3 * LANE_SHORT; p += 3 * LANE_SHORT, n -= 3 * LANE_SHORT)
        crc = crc_3way(crc, p, LANE_SHORT, zeros_short);
    uint64_t c64 = crc;
    for (; n >= 8; p += 8, n -= 8)
        c64 = _mm_crc32_u64(c64, load64(p));
    crc = (uint32_t)c64;
    if (n >= 4) { /* n < 8 here */
        uint32_t w;
        memcpy(&w, p, 4);
        crc = _mm_crc32_u32(crc, w);
        p += 4;
        n -= 4;
    }
    while (n--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

typedef uint32_t (*crc_fn)(uint32_t, const unsigned char *, size_t);
static crc_fn crc_update = crc_update_sw;
static int crc_is_hw = 0;

/* The crc32c package's convention: value is a finished CRC, chaining composes. */
static inline uint32_t
crc32c_value(crc_fn fn, uint32_t value, const unsigned char *p, size_t n)
{
    return ~fn(~value, p, n);
}

static PyObject *
crc32c_common(PyObject *args, PyObject *kwargs, const char *fmt, crc_fn fn)
{
    static char *kwlist[] = {"data", "value", NULL};
    Py_buffer buf;
    PyObject *value_obj = NULL;
    uint32_t value = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, fmt, kwlist, &buf, &value_obj))
        return NULL;
    if (value_obj != NULL) {
        /* truncated to 32 bits like the package's "I" argument */
        unsigned long v = PyLong_AsUnsignedLongMask(value_obj);
        if (v == (unsigned long)-1 && PyErr_Occurred()) {
            PyBuffer_Release(&buf);
            return NULL;
        }
        value = (uint32_t)v;
    }
    uint32_t crc = crc32c_value(fn, value, (const unsigned char *)buf.buf, (size_t)buf.len);
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *
speedups_crc32c(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    return crc32c_common(args, kwargs, "y*|O:crc32c", crc_update);
}

static PyObject *
speedups_crc32c_software(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    return crc32c_common(args, kwargs, "y*|O:_crc32c_software", crc_update_sw);
}

/* ---- encode_fixed ---------------------------------------------------------------------- */

enum { A_DATA, A_INDEX, A_TERM, A_TYPE, N_ATTRS };
static PyObject *attr_names[N_ATTRS]; /* interned "data", "index", "term", "type" */

/* Where the batch's entry type keeps the four attributes. Generic attribute access is about
 * half the cost of an entry, so for a plain slots class (Entry) the loop reads the slots as
 * the interpreter's specialized LOAD_ATTR_SLOT does. Resolved once per batch, through the
 * type's own attribute lookup, and dropped as soon as anything may run Python code (which
 * could change the class): the value read is always the one ``e.attr`` would give. */
typedef struct {
    PyTypeObject *tp; /* owned; NULL: generic access only */
    Py_ssize_t off[N_ATTRS];
} slots_t;

static void
slots_drop(slots_t *s)
{
    Py_CLEAR(s->tp);
}

/* Fill s for tp if tp qualifies (plain metaclass, generic getattr, the attributes are
 * object slots); otherwise leave s->tp NULL. -1 only for an exception to propagate. */
static int
slots_resolve(slots_t *s, PyTypeObject *tp)
{
    s->tp = NULL;
    if (Py_TYPE(tp) != &PyType_Type || tp->tp_getattro != PyObject_GenericGetAttr)
        return 0;
    /* held from here on: the lookups may run Python code, which could drop the last entry
     * of this type (and so the type) or let another type take its address */
    Py_INCREF(tp);
    for (int k = 0; k < N_ATTRS; k++) {
        /* with metaclass type, this is the descriptor an instance lookup finds */
        PyObject *d = PyObject_GetAttr((PyObject *)tp, attr_names[k]);
        if (d == NULL) {
            Py_DECREF(tp);
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
            return 0;
        }
        int ok = 0;
        if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            ok = m->type == Py_T_OBJECT_EX && (m->flags & ~Py_READONLY) == 0 &&
                 m->offset >= (Py_ssize_t)sizeof(PyObject) &&
                 m->offset <= tp->tp_basicsize - (Py_ssize_t)sizeof(PyObject *) &&
                 PyType_IsSubtype(tp, PyDescr_TYPE(d));
            s->off[k] = m->offset;
        }
        Py_DECREF(d);
        if (!ok) {
            Py_DECREF(tp);
            return 0;
        }
    }
    s->tp = tp;
    return 0;
}

/* New reference to attribute k of e, or NULL with an exception set. */
static inline PyObject *
get_attr(PyObject *e, int k, slots_t *s)
{
    if (Py_TYPE(e) == s->tp) {
        PyObject *v = *(PyObject **)((char *)e + s->off[k]);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
    }
    slots_drop(s); /* generic access may run Python code (a property, __getattr__) */
    return PyObject_GetAttr(e, attr_names[k]);
}

/* Attribute k of e as an int in [0, max] (an int, or an __index__ object, as struct takes);
 * anything else is ValueError so the caller falls back. Other exceptions propagate. */
static int
get_uint(PyObject *e, int k, slots_t *s, unsigned long long max, unsigned long long *out)
{
    PyObject *v = get_attr(e, k, s);
    if (v == NULL)
        return -1;
    PyObject *num;
    if (PyLong_CheckExact(v)) {
        num = v;
    }
    else {
        slots_drop(s); /* __index__ may run Python code */
        num = PyNumber_Index(v);
        Py_DECREF(v);
        if (num == NULL) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "%U is not an integer", attr_names[k]);
            }
            return -1;
        }
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(num);
    Py_DECREF(num);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear(); /* negative, or above 2**64-1 */
        x = max + 1;   /* max is at most 2**32-1, so this cannot wrap */
    }
    if (x > max) {
        PyErr_Format(PyExc_ValueError, "%U out of range for the fixed-width encoding",
                     attr_names[k]);
        return -1;
    }
    *out = x;
    return 0;
}

static inline void
put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void
put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void
put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Payload bytes (msgpack header + data) and whole frame bytes for dl bytes of data. */
static inline size_t
payload_len(size_t dl)
{
    return (dl < BIN16_LIMIT ? PREFIX16_SIZE : PREFIX32_SIZE) + dl;
}

static inline size_t
frame_len(size_t plen)
{
    size_t n = RECORD_HEADER_SIZE + plen;
    return 8 + n + ((0u - n) & 7u);
}

/* One entry as checked by the first pass; the second pass only copies. */
typedef struct {
    PyObject *data; /* owned reference, exact bytes */
    uint32_t term;
    uint8_t type;
} entry_t;

static void
release_entries(entry_t *ents, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(ents[i].data);
    PyMem_Free(ents);
}

/* Pass 1 for entry i: read and check it into *ent (which then owns its data). */
static int
check_entry(PyObject *e, Py_ssize_t i, slots_t *s, unsigned long long *first, entry_t *ent)
{
    unsigned long long x;
    PyObject *data = get_attr(e, A_DATA, s);
    if (data == NULL)
        return -1;
    if (!PyBytes_CheckExact(data)) {
        Py_DECREF(data);
        PyErr_SetString(PyExc_ValueError, "entry data is not bytes");
        return -1;
    }
    if ((unsigned long long)PyBytes_GET_SIZE(data) > 0xFFFFFFFFull) {
        Py_DECREF(data);
        PyErr_SetString(PyExc_ValueError, "entry data of 4 GiB or more");
        return -1;
    }
    ent->data = data;
    if (get_uint(e, A_INDEX, s, 0xFFFFFFFFull, &x) < 0)
        goto fail;
    if (i == 0)
        *first = x;
    else if (x != *first + (unsigned long long)i) {
        PyErr_SetString(PyExc_ValueError, "entries not contiguous");
        goto fail;
    }
    if (get_uint(e, A_TERM, s, 0xFFFFFFFFull, &x) < 0)
        goto fail;
    ent->term = (uint32_t)x;
    if (get_uint(e, A_TYPE, s, 0xFFull, &x) < 0)
        goto fail;
    ent->type = (uint8_t)x;
    return 0;
fail:
    Py_CLEAR(ent->data);
    return -1;
}

static PyObject *
speedups_encode_fixed(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *entries, *crc_obj;
    if (!PyArg_ParseTuple(args, "OO:encode_fixed", &entries, &crc_obj))
        return NULL;
    /* crc32c(p, crc ^ 2) masks the value to 32 bits; so do we */
    unsigned long crc_in = PyLong_AsUnsignedLongMask(crc_obj);
    if (crc_in == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    uint32_t crc = (uint32_t)crc_in;

    PyObject *seq = PySequence_Fast(entries, "encode_fixed: entries must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    if (count == 0) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "encode_fixed: no entries");
        return NULL;
    }
    entry_t *ents = PyMem_New(entry_t, count);
    if (ents == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    slots_t slots;
    if (slots_resolve(&slots, Py_TYPE(PySequence_Fast_GET_ITEM(seq, 0))) < 0) {
        PyMem_Free(ents);
        Py_DECREF(seq);
        return NULL;
    }

    /* Pass 1: read and check every entry, and size the output exactly. Attributes are read
     * once: a second read could see other values (and another data length). */
    Py_ssize_t done = 0; /* entries whose data reference ents[] owns */
    unsigned long long first = 0;
    size_t total = 0;
    PyObject *out = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        /* seq may be the caller's list, and a property or __index__ could change it:
         * fetch each item afresh and hold it while it is read */
        if (PySequence_Fast_GET_SIZE(seq) != count) {
            PyErr_SetString(PyExc_RuntimeError, "entries changed size during encoding");
            goto fail;
        }
        PyObject *e = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(e);
        int r = check_entry(e, i, &slots, &first, &ents[i]);
        Py_DECREF(e);
        if (r < 0)
            goto fail;
        done = i + 1;
        size_t frame = frame_len(payload_len((size_t)PyBytes_GET_SIZE(ents[i].data)));
        if (frame > (size_t)PY_SSIZE_T_MAX - total) {
            PyErr_SetString(PyExc_ValueError, "batch too large");
            goto fail;
        }
        total += frame;
    }
    slots_drop(&slots);
    Py_CLEAR(seq);

    /* Pass 2: nothing can fail but the allocation; the bytes object is filled completely. */
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out == NULL)
        goto fail;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned char *group = p; /* frames written but not yet hashed start here */
    Py_ssize_t g0 = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        size_t dl = (size_t)PyBytes_GET_SIZE(ents[i].data);
        size_t plen = payload_len(dl) - dl; /* the msgpack header */
        size_t n = RECORD_HEADER_SIZE + plen + dl;
        size_t pad = (0u - n) & 7u;
        put_le64(p, (uint64_t)n | (pad ? (uint64_t)(0x80u | pad) << 56 : 0));
        p[12] = ENTRY_RECORD_TYPE;
        unsigned char *q = p + 8 + RECORD_HEADER_SIZE; /* payload */
        q[0] = 0x94;
        q[1] = 0xCE;
        put_be32(q + 2, (uint32_t)(first + (unsigned long long)i));
        q[6] = 0xCE;
        put_be32(q + 7, ents[i].term);
        q[11] = 0xCC;
        q[12] = ents[i].type;
        if (dl < BIN16_LIMIT) {
            q[13] = 0xC5;
            q[14] = (unsigned char)(dl >> 8);
            q[15] = (unsigned char)dl;
        }
        else {
            q[13] = 0xC6;
            put_be32(q + 14, (uint32_t)dl);
        }
        memcpy(q + plen, PyBytes_AS_STRING(ents[i].data), dl);
        memset(q + plen + dl, 0, pad);
        p = q + plen + dl + pad;
        /* Hash a group of frames once written, not each frame right after writing it: the
         * CRC's wide loads stall on narrower stores still in flight (store forwarding),
         * and the chain is serial, so every stall would add up. Groups stay in cache. */
        if ((size_t)(p - group) >= CRC_GROUP_BYTES || i == count - 1) {
            for (; g0 <= i; g0++) {
                size_t glen = payload_len((size_t)PyBytes_GET_SIZE(ents[g0].data));
                crc = crc32c_value(crc_update, crc ^ ENTRY_RECORD_TYPE,
                                   group + 8 + RECORD_HEADER_SIZE, glen);
                put_le32(group + 8, crc);
                group += frame_len(glen);
            }
        }
    }
    release_entries(ents, count);
    ents = NULL;
    done = 0;

    PyObject *crc_res = PyLong_FromUnsignedLong(crc);
    PyObject *last = PyLong_FromUnsignedLongLong(first + (unsigned long long)(count - 1));
    PyObject *res = (crc_res && last) ? PyTuple_New(3) : NULL;
    if (res == NULL) {
        Py_XDECREF(crc_res);
        Py_XDECREF(last);
        goto fail;
    }
    PyTuple_SET_ITEM(res, 0, out);
    PyTuple_SET_ITEM(res, 1, crc_res);
    PyTuple_SET_ITEM(res, 2, last);
    return res;

fail:
    slots_drop(&slots);
    if (ents != NULL)
        release_entries(ents, done);
    Py_XDECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

/* ---- module ---------------------------------------------------------------------------- */

PyDoc_STRVAR(crc32c_doc,
             "crc32c(data, value=0) -> int\n\n"
             "CRC-32C of a bytes-like object, chained from value (the crc32c package's "
             "convention).");
PyDoc_STRVAR(crc32c_software_doc,
             "_crc32c_software(data, value=0) -> int\n\n"
             "crc32c() on the table-driven path even where SSE4.2 is used (for tests).");
PyDoc_STRVAR(encode_fixed_doc,
             "encode_fixed(entries, crc) -> (bytes, crc, last_index)\n\n"
             "The frames wal.framing._encode_fixed builds, joined into one bytes object, "
             "the running CRC and the last index. ValueError for a batch it refuses (and "
             "for no entries); nothing is returned in part.");

static PyMethodDef speedups_methods[] = {
    {"crc32c", (PyCFunction)(void (*)(void))speedups_crc32c, METH_VARARGS | METH_KEYWORDS,
     crc32c_doc},
    {"_crc32c_software", (PyCFunction)(void (*)(void))speedups_crc32c_software,
     METH_VARARGS | METH_KEYWORDS, crc32c_software_doc},
    {"encode_fixed", speedups_encode_fixed, METH_VARARGS, encode_fixed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "wal._speedups",
    "Optional C accelerator for wal.framing (byte-identical to the pure-Python path).",
    -1,
    speedups_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    static int ready = 0;
    if (!ready) {
        crc_table_init();
#if WAL_HAVE_SSE42_PATH
        __builtin_cpu_init();
        if (__builtin_cpu_supports("sse4.2")) {
            zeros_init(zeros_long, LANE_LONG);
            zeros_init(zeros_mid, LANE_MID);
            zeros_init(zeros_short, LANE_SHORT);
            crc_update = crc_update_hw;
            crc_is_hw = 1;
        }
#endif
        static const char *names[N_ATTRS] = {"data", "index", "term", "type"};
        for (int k = 0; k < N_ATTRS; k++) {
            attr_names[k] = PyUnicode_InternFromString(names[k]);
            if (attr_names[k] == NULL) {
                for (int j = 0; j < k; j++)
                    Py_CLEAR(attr_names[j]);
                return NULL;
            }
        }
        ready = 1;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "HARDWARE_CRC", crc_is_hw ? Py_True : Py_False) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
