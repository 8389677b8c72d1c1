/* The bencode codec of the ng protocol: a strict parser with bounds, and the writers. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "media/bencode.h"

struct parser {
	const char *p, *end;
	struct benc *nodes;
	unsigned used;
};

static int parse_value(struct parser *ps, struct benc **out, unsigned depth);

static struct benc *node_new(struct parser *ps)
{
	struct benc *n;

	if (ps->used >= BENC_MAX_NODES)
		return NULL;
	n = &ps->nodes[ps->used++];
	memset(n, 0, sizeof(*n));
	return n;
}

/* Digits up to stop; no leading zero unless the number is 0; fits in *v. */
static int parse_number(struct parser *ps, char stop, int allow_neg, long long *v)
{
	const char *start;
	int neg = 0;
	unsigned long long acc = 0;

	if (allow_neg && ps->p < ps->end && *ps->p == '-') {
		neg = 1;
		ps->p++;
	}
	start = ps->p;
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		unsigned d = (unsigned)(*ps->p - '0');

		if (acc > ((unsigned long long)LLONG_MAX - d) / 10)
			return EINVAL;
		acc = acc * 10 + d;
		ps->p++;
	}
	if (ps->p == start || ps->p >= ps->end || *ps->p != stop)
		return EINVAL;
	if (*start == '0' && (ps->p - start > 1 || neg))
		return EINVAL; /* 03, -0 */
	ps->p++;
	*v = neg ? -(long long)acc : (long long)acc;
	return 0;
}

static int parse_string(struct parser *ps, const char **s, size_t *len)
{
	long long n;

	if (parse_number(ps, ':', 0, &n))
		return EINVAL;
	if ((unsigned long long)n > (size_t)(ps->end - ps->p))
		return EINVAL;
	*s = ps->p;
	*len = (size_t)n;
	ps->p += n;
	return 0;
}

static int parse_items(struct parser *ps, struct benc *parent, unsigned depth)
{
	struct benc **tail = &parent->child;
	const char *key = NULL;
	size_t klen = 0;
	int err;

	for (;;) {
		struct benc *item;

		if (ps->p >= ps->end)
			return EINVAL;
		if (*ps->p == 'e') {
			ps->p++;
			return 0;
		}
		if (parent->type == BENC_DICT) {
			if (*ps->p < '0' || *ps->p > '9' || parse_string(ps, &key, &klen))
				return EINVAL;
		}
		err = parse_value(ps, &item, depth + 1);
		if (err)
			return err;
		item->key = key;
		item->klen = klen;
		*tail = item;
		tail = &item->next;
	}
}

static int parse_value(struct parser *ps, struct benc **out, unsigned depth)
{
	struct benc *n;

	if (depth > BENC_MAX_DEPTH)
		return E2BIG;
	if (ps->p >= ps->end)
		return EINVAL;
	n = node_new(ps);
	if (!n)
		return E2BIG;
	*out = n;
	switch (*ps->p) {
	case 'i':
		ps->p++;
		n->type = BENC_INT;
		return parse_number(ps, 'e', 1, &n->i);
	case 'l':
	case 'd':
		n->type = *ps->p == 'l' ? BENC_LIST : BENC_DICT;
		ps->p++;
		return parse_items(ps, n, depth);
	default:
		if (*ps->p < '0' || *ps->p > '9')
			return EINVAL;
		n->type = BENC_STR;
		return parse_string(ps, &n->s, &n->len);
	}
}

int benc_parse(const char *in, size_t len, struct benc **rootp)
{
	struct parser ps = {.p = in, .end = in + len};
	struct benc *root = NULL;
	size_t cap = len + 1 < BENC_MAX_NODES ? len + 1 : BENC_MAX_NODES;
	int err;

	if (!in || !len)
		return EINVAL;
	/* A node takes at least one input byte: no more nodes than bytes. */
	ps.nodes = calloc(cap, sizeof(*ps.nodes));
	if (!ps.nodes)
		return ENOMEM;
	err = parse_value(&ps, &root, 0);
	if (!err && ps.used > cap)
		err = E2BIG;
	if (!err && ps.p != ps.end)
		err = EINVAL;
	if (err) {
		free(ps.nodes);
		return err;
	}
	*rootp = root; /* the first node: the array's start */
	return 0;
}

void benc_free(struct benc *root)
{
	free(root);
}

const struct benc *benc_get(const struct benc *d, const char *key)
{
	size_t kl = strlen(key);

	if (!d || d->type != BENC_DICT)
		return NULL;
	for (const struct benc *v = d->child; v; v = v->next)
		if (v->klen == kl && !memcmp(v->key, key, kl))
			return v;
	return NULL;
}

int benc_is(const struct benc *v, const char *s)
{
	size_t n = strlen(s);

	return v && v->type == BENC_STR && v->len == n && !memcmp(v->s, s, n);
}

int benc_get_str(const struct benc *d, const char *key, char *out, size_t len)
{
	const struct benc *v = benc_get(d, key);
	size_t n;

	if (!v || v->type != BENC_STR || !len)
		return ENOENT;
	n = v->len < len - 1 ? v->len : len - 1;
	memcpy(out, v->s, n);
	out[n] = 0;
	return 0;
}

void benc_put_mem(struct buf *b, const void *p, size_t n)
{
	buf_printf(b, "%zu:", n);
	buf_add(b, p, n);
}

void benc_put_str(struct buf *b, const char *s)
{
	benc_put_mem(b, s, strlen(s));
}

void benc_put_int(struct buf *b, long long v)
{
	buf_printf(b, "i%llde", v);
}

void benc_put_kv(struct buf *b, const char *key, const char *val)
{
	benc_put_str(b, key);
	benc_put_str(b, val);
}
