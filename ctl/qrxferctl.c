/* ctl/: qrxferctl, the admin CLI over the administrative HTTP API (ctl/ has no header). */
/*
 * qrxferctl: the admin CLI. It talks to qrxferd's administrative HTTP API with libcurl easy
 * (a CLI may block), and scans code images locally with codes/.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ini.h>
#include <jansson.h>

#include "codes/code.h"
#include "util/buf.h"

#ifndef QRXFER_SYSCONFDIR
#define QRXFER_SYSCONFDIR "/etc/qrxfer"
#endif

#define DEFAULT_URL   "http://127.0.0.1:8080"
#define DEFAULT_CONF  QRXFER_SYSCONFDIR "/qrxfer.conf"
#define DEFAULT_TOKEN QRXFER_SYSCONFDIR "/admin.token"
#define BODY_MAX      (64u << 20)
#define CELL_MAX      40

/* What the command line and the config file say. */
struct ctl {
	char url[512];
	char token_file[1024];
	char hmac_key_file[1024];
	char token[512];
	bool url_set, token_file_set;
	bool url_admin; /* url came from [http] admin_listen, which wins over listen */
};

static void usage(FILE *f)
{
	fputs("usage: qrxferctl [-u URL] [-t TOKENFILE] [-c CONF] COMMAND\n"
	      "  calls                list live calls\n"
	      "  moves                list moves\n"
	      "  moves MOVE           show one move\n"
	      "  move CALL            start a move on a call; prints the move\n"
	      "  code show MOVE       print a move's QR code in the terminal\n"
	      "  code png MOVE FILE   save a move's QR code as PNG\n"
	      "  metrics              print the Prometheus metrics\n"
	      "  drain                take no new calls (live ones go on): probes get 503\n"
	      "  scan FILE...         read codes in images (no server needed)\n"
	      "options:\n"
	      "  -u URL        the daemon's HTTP API (default " DEFAULT_URL
	      ", or [http] admin_listen, or [http] listen)\n"
	      "  -t TOKENFILE  admin bearer token file (default $QRXFER_ADMIN_TOKEN, then\n"
	      "                [http] admin_token_file, then " DEFAULT_TOKEN ")\n"
	      "  -c CONF       qrxferd's config (default " DEFAULT_CONF " if it exists)\n",
	      f);
}

/* ---- configuration ---- */

/* "127.0.0.1:8080" or "[::1]:8080" as an URL; wildcard addresses become loopback. */
static void listen_to_url(const char *listen, char *url, size_t len)
{
	if (!strncmp(listen, "0.0.0.0:", 8))
		snprintf(url, len, "http://127.0.0.1:%s", listen + 8);
	else if (!strncmp(listen, "[::]:", 5))
		snprintf(url, len, "http://[::1]:%s", listen + 5);
	else
		snprintf(url, len, "http://%s", listen);
}

static int on_conf(void *user, const char *section, const char *name, const char *value)
{
	struct ctl *c = user;

	if (!strcasecmp(section, "http") && !strcasecmp(name, "listen") && !c->url_set &&
	    !c->url_admin && *value) {
		listen_to_url(value, c->url, sizeof(c->url));
	} else if (!strcasecmp(section, "http") && !strcasecmp(name, "admin_listen") &&
	           !c->url_set && *value) {
		listen_to_url(value, c->url, sizeof(c->url));
		c->url_admin = true;
	} else if (!strcasecmp(section, "http") && !strcasecmp(name, "admin_token_file") &&
	           !c->token_file_set && *value)
		snprintf(c->token_file, sizeof(c->token_file), "%s", value);
	else if (!strcasecmp(section, "codes") && !strcasecmp(name, "hmac_key_file"))
		snprintf(c->hmac_key_file, sizeof(c->hmac_key_file), "%s", value);
	return 1;
}

static int read_conf(struct ctl *c, const char *path, bool must)
{
	int rc;

	if (!must && access(path, R_OK))
		return 0;
	rc = ini_parse(path, on_conf, c);
	if (rc < 0) {
		fprintf(stderr, "qrxferctl: config %s: cannot read it\n", path);
		return 1;
	}
	if (rc > 0) {
		fprintf(stderr, "qrxferctl: config %s:%d: not a key = value line or [section]\n",
		        path, rc);
		return 1;
	}
	return 0;
}

static int read_token(struct ctl *c)
{
	const char *env = getenv("QRXFER_ADMIN_TOKEN");
	char *p;
	FILE *f;

	if (!c->token_file_set && env && *env) {
		snprintf(c->token, sizeof(c->token), "%s", env);
		return 0;
	}
	f = fopen(c->token_file, "r");
	if (!f) {
		fprintf(stderr,
		        "qrxferctl: token file %s: %s (use -t FILE or QRXFER_ADMIN_TOKEN)\n",
		        c->token_file, strerror(errno));
		return 1;
	}
	if (!fgets(c->token, sizeof(c->token), f))
		c->token[0] = '\0';
	fclose(f);
	for (p = c->token + strlen(c->token); p > c->token && isspace((unsigned char)p[-1]);)
		*--p = '\0';
	if (!c->token[0]) {
		fprintf(stderr, "qrxferctl: token file %s: empty\n", c->token_file);
		return 1;
	}
	return 0;
}

/* ---- HTTP ---- */

static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t len = size * n;

	if (b->len + len > BODY_MAX)
		return 0;
	buf_add(b, data, len);
	return b->failed ? 0 : len;
}

/* The "error" of a JSON error body, else the body itself (first line). */
static void explain(const struct buf *b, char *out, size_t len)
{
	json_t *j = b->len ? json_loadb(b->data, b->len, 0, NULL) : NULL;
	const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;

	if (e)
		snprintf(out, len, "%s", e);
	else if (b->len)
		snprintf(out, len, "%.*s", (int)strcspn(b->data, "\r\n"), b->data);
	else
		out[0] = '\0';
	json_decref(j);
}

/* Sends method path to the daemon; 0 with the body in *b on a 2xx, else 1 (reported). */
static int api(const struct ctl *c, const char *method, const char *path, struct buf *b)
{
	char url[1024], auth[600], errbuf[CURL_ERROR_SIZE] = "", why[256];
	struct curl_slist *h = NULL;
	long status = 0;
	CURLcode rc;
	CURL *e;
	int ret = 1;

	*b = (struct buf){0};
	snprintf(url, sizeof(url), "%s%s", c->url, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
	e = curl_easy_init();
	h = curl_slist_append(h, auth);
	if (!e || !h) {
		fprintf(stderr, "qrxferctl: %s %s: out of memory\n", method, url);
		goto out;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (!strcmp(method, "POST"))
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(e);
	if (rc == CURLE_COULDNT_CONNECT) {
		fprintf(stderr, "qrxferctl: %s %s: connection refused (is qrxferd running?)\n",
		        method, url);
		goto out;
	}
	if (rc) {
		fprintf(stderr, "qrxferctl: %s %s: %s\n", method, url,
		        errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		explain(b, why, sizeof(why));
		fprintf(stderr, "qrxferctl: %s %s: %ld%s%s%s\n", method, url, status,
		        status == 401 ? " unauthorized (check the token)" : "", why[0] ? ": " : "",
		        why);
		goto out;
	}
	ret = 0;
out:
	if (ret)
		buf_release(b);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return ret;
}

static int api_json(const struct ctl *c, const char *method, const char *path, json_t **jp)
{
	json_error_t jerr;
	struct buf b;

	if (api(c, method, path, &b))
		return 1;
	*jp = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
	buf_release(&b);
	if (!*jp) {
		fprintf(stderr, "qrxferctl: %s %s: answer is not JSON: line %d: %s\n", method, path,
		        jerr.line, jerr.text);
		return 1;
	}
	return 0;
}

/* ---- output ---- */

static void cell(json_t *v, char *out, size_t len)
{
	char *s;

	if (!v || json_is_null(v))
		snprintf(out, len, "-");
	else if (json_is_string(v))
		snprintf(out, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(out, len, "%g", json_real_value(v));
	else if (json_is_boolean(v))
		snprintf(out, len, "%s", json_is_true(v) ? "yes" : "no");
	else {
		s = json_dumps(v, JSON_COMPACT);
		snprintf(out, len, "%s", s ? s : "?");
		free(s);
	}
}

/* The array to tabulate: the answer itself, or its only array member ({"calls": [...]}). */
static json_t *rows_of(json_t *j)
{
	const char *k;
	json_t *v, *found = NULL;

	if (json_is_array(j))
		return j;
	json_object_foreach(j, k, v)
	{
		if (json_is_array(v)) {
			if (found)
				return NULL;
			found = v;
		}
	}
	return found;
}

static bool has_col(json_t *cols, const char *key)
{
	json_t *v;
	size_t k;

	json_array_foreach(cols, k, v)
	{
		if (!strcmp(json_string_value(v), key))
			return true;
	}
	return false;
}

/* Prints an array of objects as a table, columns in order of first appearance. */
static int print_table(json_t *j, const char *what)
{
	json_t *rows = rows_of(j), *cols = json_array(), *row, *v;
	size_t i, k, ncol, *width = NULL;
	char s[CELL_MAX + 1];
	const char *key;
	int ret = 1;

	if (!rows || !cols) {
		fprintf(stderr, "qrxferctl: %s: answer is not a list\n", what);
		goto out;
	}
	if (!json_array_size(rows)) {
		printf("no %s\n", what);
		ret = 0;
		goto out;
	}
	json_array_foreach(rows, i, row)
	{
		json_object_foreach(row, key, v)
		{
			if (!has_col(cols, key))
				json_array_append_new(cols, json_string(key));
		}
	}
	ncol = json_array_size(cols);
	if (!ncol) {
		/* not objects: one value a line */
		json_array_foreach(rows, i, row)
		{
			cell(row, s, sizeof(s));
			printf("%s\n", s);
		}
		ret = 0;
		goto out;
	}
	width = calloc(ncol, sizeof(*width));
	if (!width)
		goto out;
	for (k = 0; k < ncol; k++)
		width[k] = strlen(json_string_value(json_array_get(cols, k)));
	json_array_foreach(rows, i, row)
	{
		for (k = 0; k < ncol; k++) {
			cell(json_object_get(row, json_string_value(json_array_get(cols, k))), s,
			     sizeof(s));
			if (strlen(s) > width[k])
				width[k] = strlen(s);
		}
	}
	/* the last column is not padded: no trailing blanks */
	width[ncol - 1] = 0;
	for (k = 0; k < ncol; k++)
		printf("%-*s%s", (int)width[k], json_string_value(json_array_get(cols, k)),
		       k + 1 < ncol ? "  " : "\n");
	json_array_foreach(rows, i, row)
	{
		for (k = 0; k < ncol; k++) {
			cell(json_object_get(row, json_string_value(json_array_get(cols, k))), s,
			     sizeof(s));
			printf("%-*s%s", (int)width[k], s, k + 1 < ncol ? "  " : "\n");
		}
	}
	ret = 0;
out:
	free(width);
	json_decref(cols);
	return ret;
}

/* Prints an object as "key: value" lines. */
static void print_object(json_t *j)
{
	const char *key;
	json_t *v;
	char s[1024];

	if (!json_is_object(j)) {
		char *d = json_dumps(j, JSON_INDENT(2));

		printf("%s\n", d ? d : "?");
		free(d);
		return;
	}
	json_object_foreach(j, key, v)
	{
		cell(v, s, sizeof(s));
		printf("%s: %s\n", key, s);
	}
}

/* Path segment from user input, percent-encoded. */
static int seg(const char *in, char *out, size_t len)
{
	char *e = curl_easy_escape(NULL, in, 0);

	if (!e || strlen(e) >= len) {
		curl_free(e);
		fprintf(stderr, "qrxferctl: id too long: %s\n", in);
		return 1;
	}
	snprintf(out, len, "%s", e);
	curl_free(e);
	return 0;
}

/* ---- commands ---- */

static int cmd_list(const struct ctl *c, const char *path, const char *what)
{
	json_t *j;
	int ret;

	if (api_json(c, "GET", path, &j))
		return 1;
	ret = print_table(j, what);
	json_decref(j);
	return ret;
}

static int cmd_show(const struct ctl *c, const char *method, const char *fmt, const char *id)
{
	char path[512], s[256];
	json_t *j;

	if (seg(id, s, sizeof(s)))
		return 1;
	snprintf(path, sizeof(path), fmt, s);
	if (api_json(c, method, path, &j))
		return 1;
	print_object(j);
	json_decref(j);
	return 0;
}

static int cmd_code_show(const struct ctl *c, const char *move)
{
	char path[512], s[256];
	struct buf b;

	if (seg(move, s, sizeof(s)))
		return 1;
	snprintf(path, sizeof(path), "/v1/moves/%s/qr.txt", s);
	if (api(c, "GET", path, &b))
		return 1;
	fwrite(b.data ? b.data : "", 1, b.len, stdout);
	if (b.len && b.data[b.len - 1] != '\n')
		putchar('\n');
	buf_release(&b);
	return 0;
}

static int cmd_code_png(const struct ctl *c, const char *move, const char *file)
{
	char path[512], s[256];
	struct buf b;
	FILE *f;
	int ret = 1;

	if (seg(move, s, sizeof(s)))
		return 1;
	snprintf(path, sizeof(path), "/v1/moves/%s/qr.png", s);
	if (api(c, "GET", path, &b))
		return 1;
	if (b.len < 8 || memcmp(b.data, "\x89PNG", 4)) {
		fprintf(stderr, "qrxferctl: GET %s: answer is not a PNG\n", path);
		goto out;
	}
	f = fopen(file, "wb");
	if (!f) {
		fprintf(stderr, "qrxferctl: %s: %s\n", file, strerror(errno));
		goto out;
	}
	if (fwrite(b.data, 1, b.len, f) != b.len || fclose(f)) {
		fprintf(stderr, "qrxferctl: %s: write failed: %s\n", file, strerror(errno));
		goto out;
	}
	printf("%s: %zu bytes\n", file, b.len);
	ret = 0;
out:
	buf_release(&b);
	return ret;
}

static int cmd_metrics(const struct ctl *c)
{
	struct buf b;

	if (api(c, "GET", "/metrics", &b))
		return 1;
	fwrite(b.data ? b.data : "", 1, b.len, stdout);
	buf_release(&b);
	return 0;
}

/*
 * scan: reads codes in image files with codes/, locally. With [codes] hmac_key_file readable
 * (from -c), tokens are verified too; otherwise they are only shown.
 */
static int cmd_scan(const struct ctl *c, char **files, int n)
{
	struct code_keyring *kr = NULL;
	int i, err, ret = 0;

	if (c->hmac_key_file[0]) {
		char why[160] = "";

		err = code_keyring_load(&kr, c->hmac_key_file, why, sizeof(why));
		if (err)
			fprintf(stderr, "qrxferctl: keyring %s: %s (tokens not verified)\n",
			        c->hmac_key_file, why[0] ? why : code_strerror(err));
	}
	for (i = 0; i < n; i++)
		if (code_scan_describe(files[i], kr, time(NULL), stdout))
			ret = 1;
	code_keyring_free(kr);
	return ret;
}

/* True for a server command with the right arguments (checked before the token is read). */
static bool known(int argc, char **argv)
{
	static const struct {
		const char *cmd, *sub;
		int argc;
	} cmds[] = {
	    {"calls", NULL, 1},  {"moves", NULL, 1}, {"moves", NULL, 2},   {"move", NULL, 2},
	    {"code", "show", 3}, {"code", "png", 4}, {"metrics", NULL, 1}, {"drain", NULL, 1},
	};
	size_t i;

	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[0], cmds[i].cmd) && argc == cmds[i].argc &&
		    (!cmds[i].sub || !strcmp(argv[1], cmds[i].sub)))
			return true;
	return false;
}

static int run(struct ctl *c, int argc, char **argv)
{
	const char *cmd = argv[0];

	if (!strcmp(cmd, "scan")) {
		if (argc < 2)
			goto usage;
		return cmd_scan(c, argv + 1, argc - 1);
	}
	if (!known(argc, argv))
		goto usage;
	if (read_token(c))
		return 1;
	if (!strcmp(cmd, "calls") && argc == 1)
		return cmd_list(c, "/v1/calls", "calls");
	if (!strcmp(cmd, "moves") && argc == 1)
		return cmd_list(c, "/v1/moves", "moves");
	if (!strcmp(cmd, "moves") && argc == 2)
		return cmd_show(c, "GET", "/v1/moves/%s", argv[1]);
	if (!strcmp(cmd, "move") && argc == 2)
		return cmd_show(c, "POST", "/v1/calls/%s/moves", argv[1]);
	if (!strcmp(cmd, "code") && argc == 3 && !strcmp(argv[1], "show"))
		return cmd_code_show(c, argv[2]);
	if (!strcmp(cmd, "code") && argc == 4 && !strcmp(argv[1], "png"))
		return cmd_code_png(c, argv[2], argv[3]);
	if (!strcmp(cmd, "metrics") && argc == 1)
		return cmd_metrics(c);
	if (!strcmp(cmd, "drain") && argc == 1)
		return cmd_show(c, "POST", "/v1/drain", "");
usage:
	fprintf(stderr, "qrxferctl: bad command line\n");
	usage(stderr);
	return 2;
}

int main(int argc, char **argv)
{
	struct ctl c = {0};
	const char *conf = NULL;
	int opt, ret;

	snprintf(c.url, sizeof(c.url), "%s", DEFAULT_URL);
	snprintf(c.token_file, sizeof(c.token_file), "%s", DEFAULT_TOKEN);
	while ((opt = getopt(argc, argv, "u:t:c:h")) != -1) {
		switch (opt) {
		case 'u':
			snprintf(c.url, sizeof(c.url), "%s", optarg);
			c.url_set = true;
			break;
		case 't':
			snprintf(c.token_file, sizeof(c.token_file), "%s", optarg);
			c.token_file_set = true;
			break;
		case 'c':
			conf = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (read_conf(&c, conf ? conf : DEFAULT_CONF, conf != NULL))
		return 1;
	/* trailing slashes would double up with our paths */
	while (strlen(c.url) > 1 && c.url[strlen(c.url) - 1] == '/')
		c.url[strlen(c.url) - 1] = '\0';
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		fprintf(stderr, "qrxferctl: libcurl: cannot initialise\n");
		return 1;
	}
	ret = run(&c, argc - optind, argv + optind);
	curl_global_cleanup();
	return ret;
}
