/*
 * Optional accelerator for reviewer.extract.clangwalk: the three loops of the
 * walk that visit many cursors and keep few, moved out of Python.
 *
 *   rv_top       the top-level declarations worth extracting (~10,000 cursors
 *                per QEMU TU, mostly from headers; a few hundred are kept);
 *   rv_frontier  the descendants of an expression that the Python walker
 *                handles specially, skipping the casts, parentheses, member
 *                accesses and arithmetic it would only recurse through;
 *   rv_includes  the names of the files a TU included (~700 per QEMU TU).
 *
 * Which cursor kinds are kept, skipped or descended into is decided by the
 * Python side (a table given to rv_init), so the walker's rules live in one
 * place. The facts are the same with and without this helper
 * (tests/test_walk_helper.py); without a C compiler the package installs
 * without it and the walker stays pure Python.
 *
 * libclang is not linked: the entry points come from the library that
 * clang.cindex loaded, as addresses given to rv_init, and the few libclang
 * types used are declared here with the layout of clang-c/Index.h, which is
 * part of libclang's stable C ABI.
 *
 * It is built as a CPython extension module only so that setuptools builds it
 * and importlib can find it; it is called through ctypes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct { int kind; int xdata; const void *data[3]; } CXCursor;
typedef struct { const void *ptr_data[2]; unsigned int_data; } CXSourceLocation;
typedef struct { const void *data; unsigned private_flags; } CXString;
typedef void *CXFile;
typedef void *CXTranslationUnit;
typedef int (*CXCursorVisitor)(CXCursor, CXCursor, void *);
typedef void (*CXInclusionVisitor)(CXFile, CXSourceLocation *, unsigned, void *);

static unsigned (*visit_children)(CXCursor, CXCursorVisitor, void *);
static CXSourceLocation (*cursor_location)(CXCursor);
static int (*from_main_file)(CXSourceLocation);
static void (*file_location)(CXSourceLocation, CXFile *, unsigned *, unsigned *, unsigned *);
static int (*binop_kind)(CXCursor);
static CXCursor (*referenced)(CXCursor);
static void (*get_inclusions)(CXTranslationUnit, CXInclusionVisitor, void *);
static CXString (*file_name)(CXFile);
static const char *(*c_string)(CXString);
static void (*dispose_string)(CXString);

enum { KINDS = 1024 };
/* What rv_frontier does with a cursor of each kind. */
enum { DESCEND = 0, SKIP = 1, KEEP = 2, KEEP_IF_FUNCTION_REF = 3, KEEP_IF_ASSIGN = 4 };
static unsigned char klass[KINDS];
/* Bit masks of the wrapper kinds rv_strip looks through (set by Python). */
static unsigned char wrap[KINDS];
static int assign_op, k_declref, k_function, k_var;

/* Bumped when a signature here changes: the Python side refuses another. */
int rv_version(void)
{
    return 3;
}

void rv_init(void **fns, const unsigned char *table, const unsigned char *wrappers, int assign,
             int declref, int function, int var)
{
    visit_children = (unsigned (*)(CXCursor, CXCursorVisitor, void *))fns[0];
    cursor_location = (CXSourceLocation (*)(CXCursor))fns[1];
    from_main_file = (int (*)(CXSourceLocation))fns[2];
    file_location = (void (*)(CXSourceLocation, CXFile *, unsigned *, unsigned *,
                              unsigned *))fns[3];
    binop_kind = (int (*)(CXCursor))fns[4];
    referenced = (CXCursor (*)(CXCursor))fns[5];
    get_inclusions = (void (*)(CXTranslationUnit, CXInclusionVisitor, void *))fns[6];
    file_name = (CXString (*)(CXFile))fns[7];
    c_string = (const char *(*)(CXString))fns[8];
    dispose_string = (void (*)(CXString))fns[9];
    memcpy(klass, table, KINDS);
    memcpy(wrap, wrappers, KINDS);
    assign_op = assign;
    k_declref = declref;
    k_function = function;
    k_var = var;
}

/* Cursors are written to out[] up to cap; n counts them all, so the caller
 * sees when its buffer was too small and can call again with a larger one. */
typedef struct {
    CXCursor *out;
    unsigned *depths; /* rv_frontier: each kept cursor's depth below the start */
    size_t n, cap;
    unsigned depth, budget;
    int overflow;
    int (*decide)(CXFile);
    struct Memo *memo; /* rv_top */
} Acc;

/* rv_top's memo of decide(): file address -> 1 in scope, 2 not. */
struct Memo {
    const void *key[4096];
    unsigned char val[4096];
};

static void put(Acc *acc, CXCursor c)
{
    if (acc->n < acc->cap)
        acc->out[acc->n] = c;
    acc->n++;
}

static int header_in_scope(Acc *acc, CXSourceLocation loc)
{
    CXFile f = NULL;
    file_location(loc, &f, NULL, NULL, NULL);
    if (!f)
        return 0;
    struct Memo *m = acc->memo;
    size_t h = ((uintptr_t)f >> 4) & 4095;
    for (size_t i = 0; i < 4096; i++, h = (h + 1) & 4095) {
        if (m->key[h] == f)
            return m->val[h] == 1;
        if (!m->key[h]) {
            int ok = acc->decide(f) ? 1 : 2;
            m->key[h] = f;
            m->val[h] = (unsigned char)ok;
            return ok == 1;
        }
    }
    return acc->decide(f) != 0; /* memo full: ask every time */
}

static int top(CXCursor c, CXCursor parent, void *data)
{
    (void)parent;
    Acc *acc = data;
    if (c.kind != k_function && c.kind != k_var)
        return 1;
    CXSourceLocation loc = cursor_location(c);
    if (from_main_file(loc) || (acc->decide && header_in_scope(acc, loc)))
        put(acc, c);
    return 1;
}

/* The function and variable declarations at the top level that are in the
 * main file, or in a header for which decide(file) says yes (decide may be
 * NULL: no headers). Returns how many there are. */
size_t rv_top(CXCursor tu, CXCursor *out, size_t cap, int (*decide)(CXFile))
{
    Acc acc;
    memset(&acc, 0, sizeof acc);
    acc.out = out;
    acc.cap = cap;
    acc.decide = decide;
    if (decide) {
        acc.memo = calloc(1, sizeof *acc.memo);
        if (!acc.memo)
            return (size_t)-1;
    }
    visit_children(tu, top, &acc);
    free(acc.memo);
    return acc.n;
}

static int first_child(CXCursor c, CXCursor parent, void *data)
{
    (void)parent;
    *(CXCursor *)data = c;
    return 0; /* CXChildVisit_Break */
}

static int keep(CXCursor c, unsigned k)
{
    if (k == KEEP)
        return 1;
    if (k == KEEP_IF_FUNCTION_REF) {
        CXCursor f;
        f.kind = -1;
        visit_children(c, first_child, &f);
        return f.kind == k_declref && referenced(f).kind == k_function;
    }
    if (k == KEEP_IF_ASSIGN)
        return binop_kind(c) == assign_op;
    return 0;
}

/* Visits a child at depth acc->depth below the start. The Python walker
 * counts one level for every cursor it is called on, kept, skipped or looked
 * through, so the depth is checked before the cursor is classified. */
static int frontier(CXCursor c, CXCursor parent, void *data)
{
    (void)parent;
    Acc *acc = data;
    if (acc->depth > acc->budget) {
        acc->overflow = 1;
        return 0; /* CXChildVisit_Break */
    }
    unsigned k = (unsigned)c.kind < KINDS ? klass[c.kind] : DESCEND;
    if (k == SKIP)
        return 1;
    if (keep(c, k)) {
        if (acc->n < acc->cap)
            acc->depths[acc->n] = acc->depth;
        put(acc, c);
        return 1;
    }
    acc->depth++;
    visit_children(c, frontier, acc);
    acc->depth--;
    return acc->overflow ? 0 : 1;
}

/* The descendants of c, in order, that the table keeps, looking through the
 * ones it descends into, with their depths below c (c's children are 1).
 * Returns how many, or (size_t)-1 when a descendant is more than `budget`
 * deep: the Python walker would stop there too. */
size_t rv_frontier(CXCursor c, CXCursor *out, unsigned *depths, size_t cap, unsigned budget)
{
    Acc acc;
    memset(&acc, 0, sizeof acc);
    acc.out = out;
    acc.depths = depths;
    acc.cap = cap;
    acc.depth = 1;
    acc.budget = budget;
    visit_children(c, frontier, &acc);
    return acc.overflow ? (size_t)-1 : acc.n;
}

typedef struct {
    CXCursor first;
    int n;
} Only;

static int up_to_two(CXCursor c, CXCursor parent, void *data)
{
    (void)parent;
    Only *o = data;
    if (o->n == 0)
        o->first = c;
    return ++o->n < 2; /* Continue after the first, Break after the second */
}

/* Replace *c by its only child while its kind has one of the bits of mask in
 * the wrappers table and it has exactly one child. */
void rv_strip(CXCursor *c, unsigned mask)
{
    while ((unsigned)c->kind < KINDS && (wrap[c->kind] & mask)) {
        Only o;
        o.n = 0;
        visit_children(*c, up_to_two, &o);
        if (o.n != 1)
            return;
        *c = o.first;
    }
}

typedef struct {
    char *buf;
    size_t used, cap;
} Names;

static void inclusion(CXFile f, CXSourceLocation *stack, unsigned depth, void *data)
{
    (void)stack;
    Names *names = data;
    if (depth == 0) /* the main file itself */
        return;
    CXString s = file_name(f);
    const char *p = c_string(s);
    size_t len = p ? strlen(p) : 0;
    if (names->used + len + 1 <= names->cap) {
        memcpy(names->buf + names->used, p ? p : "", len);
        names->buf[names->used + len] = '\0';
    }
    names->used += len + 1;
    dispose_string(s);
}

/* The names of the included files, each followed by a NUL, in buf; returns
 * the bytes needed (more than cap: call again with a larger buffer). */
size_t rv_includes(CXTranslationUnit tu, char *buf, size_t cap)
{
    Names names = {buf, 0, cap};
    get_inclusions(tu, inclusion, &names);
    return names.used;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walk", NULL, -1, NULL,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__walk(void)
{
    return PyModule_Create(&module);
}
