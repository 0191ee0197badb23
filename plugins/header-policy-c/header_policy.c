/* header-policy, in C: adds, copies and removes SIP headers on every call and can send every call to
 * a fixed target, all from config. The same config keys and decisions as plugins/header-policy (the
 * Rust original); tests/cases/header-policy.json holds the cases all languages must agree on.
 *
 * Ownership (wit-bindgen C): arguments belong to the callee, which frees them; whatever a hook
 * returns is freed by the generated post-return function with free(), so every returned string and
 * list is a fresh heap copy, never a pointer into the stored decision. */

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef exports_callgate_plugin_hooks_header_t header_t;
typedef exports_callgate_plugin_hooks_list_header_t header_list_t;
typedef exports_callgate_plugin_hooks_forward_t forward_t;

/* ---- memory and text ---------------------------------------------------------------------------- */

/* Running out of memory (the host caps it) has no useful answer: trap, and the host applies the
 * plugin's failure policy. */
static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

/* A growable byte string, NUL-terminated for convenience but measured by `len`: JSON strings may
 * hold NUL (`\u0000`). */
typedef struct {
    char *p;
    size_t len, cap;
} sb_t;

static void sb_add(sb_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16;
        while (cap < b->len + n + 1) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sb_t *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_chr(sb_t *b, char c) { sb_add(b, &c, 1); }

static void sb_free(sb_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- JSON --------------------------------------------------------------------------------------- */

/* A parsed JSON value. The rules follow serde_json, which the Rust plugin uses, so that all
 * languages accept and refuse the same texts: no trailing commas or characters, no lone surrogate
 * escapes, no raw control characters in strings, at most 127 nested arrays/objects, a repeated key
 * replaces the earlier value in place. Scalars keep their text as the Rust SDK prints them. */
enum kind { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

static const char *const KIND_NAME[] = {"null", "a boolean", "a number", "a string", "a list", "a table"};

typedef struct json json_t;
struct json {
    enum kind kind;
    sb_t text;     /* J_BOOL, J_NUM, J_STR: the value as text (strings unquoted, unescaped) */
    size_t n, cap; /* J_ARR, J_OBJ: number of elements */
    sb_t *keys;    /* J_OBJ: member names, parallel to items */
    json_t *items; /* J_ARR, J_OBJ: elements */
};

static void json_free(json_t *v) {
    for (size_t i = 0; i < v->n; i++) {
        json_free(&v->items[i]);
        if (v->keys) sb_free(&v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    sb_free(&v->text);
    memset(v, 0, sizeof *v);
}

/* serde_json's limit: the 128th nested array or object is an error. */
#define MAX_DEPTH 128

typedef struct {
    const unsigned char *s;
    size_t n, i;
    int depth;
    const char *err;
} parser_t;

static bool fail(parser_t *p, const char *msg) {
    if (!p->err) p->err = msg;
    return false;
}

static void skip_ws(parser_t *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static bool is_digit(parser_t *p) { return p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9'; }

static bool hex4(parser_t *p, uint32_t *out) {
    if (p->n - p->i < 4) return fail(p, "EOF while parsing a \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p->s[p->i++];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return fail(p, "invalid \\u escape");
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

static void put_utf8(sb_t *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F)), u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    sb_add(b, u, n);
}

/* A string at p->i (on its opening quote), unescaped into `out`. The text comes from the component
 * model, so it is valid UTF-8, and so is any run of it between ASCII delimiters. */
static bool parse_string(parser_t *p, sb_t *out) {
    p->i++;
    for (;;) {
        size_t run = p->i;
        while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\' && p->s[p->i] >= 0x20) p->i++;
        sb_add(out, (const char *)p->s + run, p->i - run);
        if (p->i >= p->n) return fail(p, "EOF while parsing a string");
        unsigned char c = p->s[p->i++];
        if (c == '"') return true;
        if (c != '\\') return fail(p, "control character in a string");
        if (p->i >= p->n) return fail(p, "EOF while parsing a string");
        c = p->s[p->i++];
        switch (c) {
        case '"': case '\\': case '/': sb_chr(out, (char)c); break;
        case 'b': sb_chr(out, '\b'); break;
        case 'f': sb_chr(out, '\f'); break;
        case 'n': sb_chr(out, '\n'); break;
        case 'r': sb_chr(out, '\r'); break;
        case 't': sb_chr(out, '\t'); break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(p, &cp)) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, "lone trailing surrogate in a \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return fail(p, "lone leading surrogate in a \\u escape");
                p->i += 2;
                if (!hex4(p, &lo)) return false;
                if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "lone leading surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(out, cp);
            break;
        }
        default: return fail(p, "invalid escape");
        }
    }
}

/* A finite double as serde_json prints it: the shortest digits that read back the same, in plain
 * notation with at least one fractional digit for decimal exponents -5..=15 (`100.0`, `0.00001`),
 * else in scientific notation with a signed exponent (`1e+16`, `1.5e-7`). */
static void put_double(sb_t *out, double d) {
    if (d == 0) {
        sb_str(out, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    char buf[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    /* buf is [-]D[.DDD]e(+|-)XX */
    char digits[24];
    int nd = 0, exp10;
    const char *c = buf;
    if (*c == '-') sb_chr(out, *c++);
    for (; *c != 'e'; c++)
        if (*c != '.') digits[nd++] = *c;
    exp10 = atoi(c + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (exp10 >= -5 && exp10 <= 15) {
        if (exp10 < 0) {
            sb_str(out, "0.");
            for (int k = 0; k < -exp10 - 1; k++) sb_chr(out, '0');
            sb_add(out, digits, (size_t)nd);
        } else {
            int whole = exp10 + 1;
            for (int k = 0; k < whole; k++) sb_chr(out, k < nd ? digits[k] : '0');
            sb_chr(out, '.');
            if (nd > whole) sb_add(out, digits + whole, (size_t)(nd - whole));
            else sb_chr(out, '0');
        }
    } else {
        sb_chr(out, digits[0]);
        if (nd > 1) {
            sb_chr(out, '.');
            sb_add(out, digits + 1, (size_t)(nd - 1));
        }
        snprintf(buf, sizeof buf, "e%c%d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        sb_str(out, buf);
    }
}

/* A number: integers that fit 64 bits (u64, or a negative i64) keep their digits; anything else
 * (fractions, exponents, -0, larger integers) becomes a double, as in serde_json. */
static bool parse_number(parser_t *p, json_t *out) {
    size_t start = p->i;
    bool neg = false, integer = true, overflow = false;
    uint64_t mag = 0;
    if (p->s[p->i] == '-') neg = true, p->i++;
    if (!is_digit(p)) return fail(p, "invalid number");
    if (p->s[p->i] == '0') {
        p->i++;
        if (is_digit(p)) return fail(p, "invalid number");
    } else {
        while (is_digit(p)) {
            unsigned d = p->s[p->i++] - '0';
            if (mag > (UINT64_MAX - d) / 10) overflow = true;
            else mag = mag * 10 + d;
        }
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        integer = false;
        p->i++;
        if (!is_digit(p)) return fail(p, "invalid number");
        while (is_digit(p)) p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        integer = false;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (!is_digit(p)) return fail(p, "invalid number");
        while (is_digit(p)) p->i++;
    }
    out->kind = J_NUM;
    size_t len = p->i - start;
    if (integer && !overflow && (!neg || (mag != 0 && mag <= (uint64_t)INT64_MAX + 1))) {
        /* The grammar has no leading zeros, so the literal is already the canonical text. */
        sb_add(&out->text, (const char *)p->s + start, len);
        return true;
    }
    sb_t lit = {0};
    sb_add(&lit, (const char *)p->s + start, len);
    double d = strtod(lit.p, NULL);
    sb_free(&lit);
    if (isinf(d)) return fail(p, "number out of range");
    put_double(&out->text, d);
    return true;
}

static bool parse_value(parser_t *p, json_t *out);

static bool literal(parser_t *p, const char *word, enum kind kind, json_t *out) {
    size_t n = strlen(word);
    if (p->n - p->i < n || memcmp(p->s + p->i, word, n) != 0) return fail(p, "expected a value");
    p->i += n;
    out->kind = kind;
    if (kind == J_BOOL) sb_str(&out->text, word);
    return true;
}

/* Appends `v` (moved) to the container `c`; for objects under `key` (moved), replacing the value of
 * an earlier member of the same name where it stands. */
static void push(json_t *c, sb_t *key, json_t *v) {
    if (key) {
        for (size_t k = 0; k < c->n; k++) {
            if (c->keys[k].len == key->len && memcmp(c->keys[k].p, key->p, key->len) == 0) {
                json_free(&c->items[k]);
                c->items[k] = *v;
                sb_free(key);
                return;
            }
        }
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->items = xrealloc(c->items, c->cap * sizeof *c->items);
        if (key) c->keys = xrealloc(c->keys, c->cap * sizeof *c->keys);
    }
    c->items[c->n] = *v;
    if (key) c->keys[c->n] = *key;
    c->n++;
}

/* An array or object at p->i (on its opening bracket). */
static bool parse_container(parser_t *p, json_t *out, bool object) {
    char close = object ? '}' : ']';
    out->kind = object ? J_OBJ : J_ARR;
    if (++p->depth >= MAX_DEPTH) return fail(p, "recursion limit exceeded");
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return true;
    }
    for (;;) {
        sb_t key = {0};
        json_t item = {0};
        skip_ws(p);
        if (object) {
            if (p->i >= p->n || p->s[p->i] != '"') return fail(p, "expected a member name");
            if (!parse_string(p, &key)) return sb_free(&key), false;
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return sb_free(&key), fail(p, "expected `:`");
            p->i++;
        }
        if (!parse_value(p, &item)) {
            json_free(&item);
            sb_free(&key);
            return false;
        }
        push(out, object ? &key : NULL, &item);
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++;
            p->depth--;
            return true;
        }
        return fail(p, object ? "expected `,` or `}`" : "expected `,` or `]`");
    }
}

static bool parse_value(parser_t *p, json_t *out) {
    skip_ws(p);
    if (p->i >= p->n) return fail(p, "EOF while parsing a value");
    switch (p->s[p->i]) {
    case '{': return parse_container(p, out, true);
    case '[': return parse_container(p, out, false);
    case '"': out->kind = J_STR; return parse_string(p, &out->text);
    case 't': return literal(p, "true", J_BOOL, out);
    case 'f': return literal(p, "false", J_BOOL, out);
    case 'n': return literal(p, "null", J_NULL, out);
    default:
        if (p->s[p->i] == '-' || (p->s[p->i] >= '0' && p->s[p->i] <= '9')) return parse_number(p, out);
        return fail(p, "expected a value");
    }
}

/* True if `s` is only Unicode White_Space (what Rust's str::trim removes): such a config counts
 * as `{}`. */
static bool blank(const unsigned char *s, size_t n) {
    static const uint32_t SPACES[] = {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (i + len > n) return false;
        cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) cp = cp << 6 | (s[i + k] & 0x3F);
        i += len;
        if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || (cp >= 0x2000 && cp <= 0x200A)) continue;
        bool space = false;
        for (size_t k = 0; k < sizeof SPACES / sizeof SPACES[0]; k++) space |= cp == SPACES[k];
        if (!space) return false;
    }
    return true;
}

/* Parses the whole config text into `root` (an object), or returns an error message (heap). */
static char *parse_config(const unsigned char *s, size_t n, json_t *root) {
    memset(root, 0, sizeof *root);
    if (blank(s, n)) {
        root->kind = J_OBJ;
        return NULL;
    }
    parser_t p = {s, n, 0, 0, NULL};
    if (parse_value(&p, root)) {
        skip_ws(&p);
        if (p.i < p.n) fail(&p, "trailing characters");
    }
    sb_t msg = {0};
    if (p.err) {
        char at[48];
        snprintf(at, sizeof at, " at byte %zu", p.i);
        sb_str(&msg, "config is not valid JSON: ");
        sb_str(&msg, p.err);
        sb_str(&msg, at);
    } else if (root->kind != J_OBJ) {
        sb_str(&msg, "config must be a table, found ");
        sb_str(&msg, KIND_NAME[root->kind]);
    } else {
        return NULL;
    }
    json_free(root);
    return msg.p;
}

static json_t *member(json_t *obj, const char *key) {
    size_t n = strlen(key);
    for (size_t k = 0; k < obj->n; k++)
        if (obj->keys[k].len == n && memcmp(obj->keys[k].p, key, n) == 0) return &obj->items[k];
    return NULL;
}

static bool scalar(const json_t *v) { return v->kind == J_BOOL || v->kind == J_NUM || v->kind == J_STR; }

/* ---- the policy -------------------------------------------------------------------------------- */

/* Headers the gateway owns, full and compact forms (RFC 3261 7.3.3): never added or removed. */
static const char *const HOST_OWNED[] = {
    "Via", "Call-ID", "CSeq", "From", "To", "Contact", "Route", "Record-Route", "Content-Length",
    "Content-Type", "Max-Forwards", "v", "i", "f", "t", "m", "l", "c",
};

static bool ascii_ieq(const char *a, size_t an, const char *b) {
    size_t bn = strlen(b);
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z') y += 'a' - 'A';
        if (x != y) return false;
    }
    return true;
}

/* Why `name` cannot be handed to the host (appended to `msg`), or false if it can: it must be a SIP
 * token (RFC 3261 25.1) and not a header the host owns. */
static bool bad_header_name(const sb_t *name, sb_t *msg) {
    bool token = name->len > 0;
    for (size_t i = 0; i < name->len && token; i++) {
        char c = name->p[i];
        token = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                (c != 0 && strchr("-.!%*_+`'~", c) != NULL);
    }
    sb_chr(msg, '`');
    sb_add(msg, name->p, name->len);
    if (!token) {
        sb_str(msg, "` is not a valid SIP header name");
        return true;
    }
    for (size_t k = 0; k < sizeof HOST_OWNED / sizeof HOST_OWNED[0]; k++) {
        if (ascii_ieq(name->p, name->len, HOST_OWNED[k])) {
            sb_str(msg, "` is a header the gateway owns; plugins cannot set or remove it");
            return true;
        }
    }
    return false;
}

static void prefix(sb_t *msg, const char *key) {
    sb_str(msg, "header-policy: `");
    sb_str(msg, key);
    sb_str(msg, "`: ");
}

static void wrong_type(sb_t *msg, const char *key, const sb_t *sub, const char *expected, const json_t *v) {
    sb_str(msg, "config `");
    sb_str(msg, key);
    if (sub) {
        sb_chr(msg, '.');
        sb_add(msg, sub->p, sub->len);
    }
    sb_str(msg, "`: expected ");
    sb_str(msg, expected);
    sb_str(msg, ", found ");
    sb_str(msg, KIND_NAME[v->kind]);
}

static void dup(plugin_string_t *to, const sb_t *from) { plugin_string_dup_n(to, from->p ? from->p : "", from->len); }

/* The table `key` of scalars, as headers in file order. */
static bool headers(json_t *root, const char *key, header_list_t *out, sb_t *msg) {
    json_t *t = member(root, key);
    if (!t || t->kind == J_NULL) return true;
    if (t->kind != J_OBJ) return wrong_type(msg, key, NULL, "a table", t), false;
    for (size_t k = 0; k < t->n; k++) {
        if (!scalar(&t->items[k])) return wrong_type(msg, key, &t->keys[k], "a string", &t->items[k]), false;
    }
    for (size_t k = 0; k < t->n; k++) {
        const sb_t *name = &t->keys[k], *value = &t->items[k].text;
        sb_t why = {0};
        if (bad_header_name(name, &why)) {
            prefix(msg, key);
            sb_add(msg, why.p, why.len);
            sb_free(&why);
            return false;
        }
        sb_free(&why);
        for (size_t i = 0; i < value->len; i++) {
            if (value->p[i] == '\r' || value->p[i] == '\n' || value->p[i] == 0) {
                prefix(msg, key);
                sb_str(msg, "header `");
                sb_add(msg, name->p, name->len);
                sb_str(msg, "`: the value contains CR, LF or NUL");
                return false;
            }
        }
    }
    out->len = t->n;
    out->ptr = t->n ? xrealloc(NULL, t->n * sizeof *out->ptr) : NULL;
    for (size_t k = 0; k < t->n; k++) {
        dup(&out->ptr[k].name, &t->keys[k]);
        dup(&out->ptr[k].value, &t->items[k].text);
    }
    return true;
}

/* The list `key` of scalars, as header names. */
static bool names(json_t *root, const char *key, plugin_list_string_t *out, sb_t *msg) {
    json_t *l = member(root, key);
    if (!l || l->kind == J_NULL) return true;
    if (l->kind != J_ARR) return wrong_type(msg, key, NULL, "a list", l), false;
    for (size_t k = 0; k < l->n; k++) {
        if (!scalar(&l->items[k])) {
            char index[24];
            snprintf(index, sizeof index, "%zu", k);
            sb_t sub = {0};
            sb_str(&sub, index);
            wrong_type(msg, key, &sub, "a string", &l->items[k]);
            sb_free(&sub);
            return false;
        }
    }
    for (size_t k = 0; k < l->n; k++) {
        sb_t why = {0};
        if (bad_header_name(&l->items[k].text, &why)) {
            prefix(msg, key);
            sb_add(msg, why.p, why.len);
            sb_free(&why);
            return false;
        }
        sb_free(&why);
    }
    out->len = l->n;
    out->ptr = l->n ? xrealloc(NULL, l->n * sizeof *out->ptr) : NULL;
    for (size_t k = 0; k < l->n; k++) dup(&out->ptr[k], &l->items[k].text);
    return true;
}

/* A `sip:` or `sips:` URI (scheme in any case) with something after the scheme. */
static bool is_sip_uri(const sb_t *u) {
    return (u->len > 4 && ascii_ieq(u->p, 4, "sip:")) || (u->len > 5 && ascii_ieq(u->p, 5, "sips:"));
}

static bool target(json_t *root, plugin_option_string_t *out, sb_t *msg) {
    json_t *t = member(root, "target");
    if (!t || t->kind == J_NULL) return true;
    if (t->kind != J_STR) return wrong_type(msg, "target", NULL, "a string", t), false;
    if (!is_sip_uri(&t->text)) {
        sb_str(msg, "header-policy: `target` \"");
        sb_add(msg, t->text.p, t->text.len);
        sb_str(msg, "\" is not a sip: or sips: URI");
        return false;
    }
    out->is_some = true;
    dup(&out->val, &t->text);
    return true;
}

/* The decision, the same for every call: built by `init`, copied out by `on_invite`. */
static forward_t DECISION;

bool exports_callgate_plugin_hooks_init(plugin_string_t *config, exports_callgate_plugin_hooks_plugin_info_t *ret,
                                        plugin_string_t *err) {
    json_t root;
    forward_t next = {0};
    sb_t msg = {0};
    char *bad = parse_config(config->ptr, config->len, &root);
    plugin_string_free(config);
    if (bad) {
        sb_str(&msg, bad);
        free(bad);
    } else {
        (void)(headers(&root, "invite-headers", &next.invite_headers, &msg) &&
               headers(&root, "response-headers", &next.response_headers, &msg) &&
               names(&root, "pass-through", &next.pass_through, &msg) &&
               names(&root, "remove-headers", &next.remove_headers, &msg) && target(&root, &next.target, &msg));
        json_free(&root);
    }
    if (msg.len) {
        exports_callgate_plugin_hooks_forward_free(&next);
        dup(err, &msg);
        sb_free(&msg);
        return false;
    }
    /* init may run again on the same instance: the new decision replaces the old. */
    exports_callgate_plugin_hooks_forward_free(&DECISION);
    DECISION = next;
    ret->hooks = EXPORTS_CALLGATE_PLUGIN_HOOKS_HOOK_SET_INVITE;
    return true;
}

static void copy_headers(header_list_t *to, const header_list_t *from) {
    to->len = from->len;
    to->ptr = from->len ? xrealloc(NULL, from->len * sizeof *to->ptr) : NULL;
    for (size_t k = 0; k < from->len; k++) {
        plugin_string_dup_n(&to->ptr[k].name, (const char *)from->ptr[k].name.ptr, from->ptr[k].name.len);
        plugin_string_dup_n(&to->ptr[k].value, (const char *)from->ptr[k].value.ptr, from->ptr[k].value.len);
    }
}

static void copy_names(plugin_list_string_t *to, const plugin_list_string_t *from) {
    to->len = from->len;
    to->ptr = from->len ? xrealloc(NULL, from->len * sizeof *to->ptr) : NULL;
    for (size_t k = 0; k < from->len; k++)
        plugin_string_dup_n(&to->ptr[k], (const char *)from->ptr[k].ptr, from->ptr[k].len);
}

void exports_callgate_plugin_hooks_on_invite(exports_callgate_plugin_hooks_call_info_t *call,
                                             exports_callgate_plugin_hooks_request_t *request,
                                             exports_callgate_plugin_hooks_invite_decision_t *ret) {
    exports_callgate_plugin_hooks_call_info_free(call);
    exports_callgate_plugin_hooks_request_free(request);
    memset(ret, 0, sizeof *ret);
    ret->tag = EXPORTS_CALLGATE_PLUGIN_HOOKS_INVITE_DECISION_FORWARD;
    forward_t *f = &ret->val.forward;
    if (DECISION.target.is_some) {
        f->target.is_some = true;
        plugin_string_dup_n(&f->target.val, (const char *)DECISION.target.val.ptr, DECISION.target.val.len);
    }
    copy_headers(&f->invite_headers, &DECISION.invite_headers);
    copy_headers(&f->response_headers, &DECISION.response_headers);
    copy_names(&f->pass_through, &DECISION.pass_through);
    copy_names(&f->remove_headers, &DECISION.remove_headers);
}

/* The other hooks are never called (init asks for on-invite only) but every export must exist; they
 * answer "no opinion" and free their arguments. */

void exports_callgate_plugin_hooks_on_response(exports_callgate_plugin_hooks_call_info_t *call,
                                               exports_callgate_plugin_hooks_leg_t leg, plugin_string_t *method,
                                               exports_callgate_plugin_hooks_response_t *response,
                                               exports_callgate_plugin_hooks_header_edits_t *ret) {
    (void)leg;
    exports_callgate_plugin_hooks_call_info_free(call);
    plugin_string_free(method);
    exports_callgate_plugin_hooks_response_free(response);
    memset(ret, 0, sizeof *ret);
}

void exports_callgate_plugin_hooks_on_refer(exports_callgate_plugin_hooks_call_info_t *call,
                                            exports_callgate_plugin_hooks_leg_t leg,
                                            exports_callgate_plugin_hooks_transfer_request_t *transfer,
                                            exports_callgate_plugin_hooks_refer_decision_t *ret) {
    (void)leg;
    exports_callgate_plugin_hooks_call_info_free(call);
    exports_callgate_plugin_hooks_transfer_request_free(transfer);
    memset(ret, 0, sizeof *ret);
    ret->tag = EXPORTS_CALLGATE_PLUGIN_HOOKS_REFER_DECISION_NO_OPINION;
}

void exports_callgate_plugin_hooks_recording_policy(exports_callgate_plugin_hooks_call_info_t *call,
                                                    exports_callgate_plugin_hooks_recording_decision_t *ret) {
    exports_callgate_plugin_hooks_call_info_free(call);
    memset(ret, 0, sizeof *ret);
    ret->tag = EXPORTS_CALLGATE_PLUGIN_HOOKS_RECORDING_DECISION_NONE;
}

void exports_callgate_plugin_hooks_on_media_state(exports_callgate_plugin_hooks_call_info_t *call,
                                                  exports_callgate_plugin_hooks_leg_t leg,
                                                  exports_callgate_plugin_hooks_media_change_t *change) {
    (void)leg, (void)change;
    exports_callgate_plugin_hooks_call_info_free(call);
}

void exports_callgate_plugin_hooks_on_dtmf(exports_callgate_plugin_hooks_call_info_t *call,
                                           exports_callgate_plugin_hooks_leg_t leg,
                                           exports_callgate_plugin_hooks_dtmf_t *digit) {
    (void)leg, (void)digit;
    exports_callgate_plugin_hooks_call_info_free(call);
}

void exports_callgate_plugin_hooks_on_call_end(exports_callgate_plugin_hooks_call_info_t *call,
                                               exports_callgate_plugin_hooks_call_summary_t *summary) {
    exports_callgate_plugin_hooks_call_info_free(call);
    exports_callgate_plugin_hooks_call_summary_free(summary);
}
