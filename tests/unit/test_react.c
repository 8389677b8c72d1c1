/*
 * What strangers send to the reactions (move/react_parse.c): one emoji grapheme, the reaction's
 * JSON body with the reason a bad one is refused, a URL to share.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "move/react.h"

static int emoji(const char *s)
{
	return react_emoji_ok(s, strlen(s));
}

Test(react, one_emoji_grapheme)
{
	cr_assert(emoji("\U0001F44D"), "thumbs up");
	cr_assert(emoji("\u2764\ufe0f"), "red heart with its variation selector");
	cr_assert(emoji("\U0001F44D\U0001F3FD"), "a skin tone");
	cr_assert(emoji("\U0001F468\u200D\U0001F469\u200D\U0001F467"), "a ZWJ family");
	cr_assert(emoji("\U0001F1E9\U0001F1EA"), "a flag: two regional indicators");
	cr_assert(emoji("1\ufe0f\u20e3"), "a keycap");
	cr_assert(emoji("\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"),
	          "a tag sequence (Scotland)");
}

Test(react, not_one_emoji)
{
	cr_assert(!emoji(""), "empty");
	cr_assert(!emoji("a"), "ASCII");
	cr_assert(!emoji("1"), "a digit without its keycap");
	cr_assert(!emoji("<"), "markup");
	cr_assert(!emoji("\U0001F44D\U0001F44D"), "two emoji");
	cr_assert(!emoji("\U0001F44Da"), "an emoji and a letter");
	cr_assert(!emoji("\U0001F1E9"), "half a flag");
	cr_assert(!emoji("\U0001F1E9\U0001F1EA\U0001F1EB"), "a flag and a half");
	cr_assert(!emoji("\U0001F468\u200D"), "a ZWJ with nothing after");
	cr_assert(!emoji("\u2066"), "a bidirectional isolate");
	cr_assert(!emoji("\u3000"), "the ideographic space");
	cr_assert(!emoji("\xc0\xaf"), "an overlong form");
	cr_assert(!emoji("\xed\xa0\x80"), "a surrogate");
	cr_assert(!emoji("\xf0\x9f\x91"), "cut short");
	cr_assert(!emoji("\xf4\x90\x80\x80"), "past U+10FFFF");
	cr_assert(!react_emoji_ok("\U0001F44D", 5), "a NUL inside");
	cr_assert(!emoji("\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466\u200D"
	                 "\U0001F466\u200D\U0001F466"),
	          "over 32 bytes");
}

static int parse(const char *body, char *why)
{
	char e[REACT_EMOJI_MAX + 1];
	double x, y;

	return react_parse(body, strlen(body), e, &x, &y, why, 160);
}

Test(react, body_taken)
{
	char e[REACT_EMOJI_MAX + 1], why[160];
	double x = -1, y = -1;
	const char *b = "{\"emoji\":\"\U0001F62E\",\"x\":0,\"y\":1}";

	cr_assert_eq(react_parse(b, strlen(b), e, &x, &y, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(e, "\U0001F62E");
	cr_assert(x == 0 && y == 1);
}

Test(react, body_refused_with_why)
{
	static const struct {
		const char *body, *why;
	} bad[] = {
	    {"", "not JSON"},
	    {"{", "not JSON"},
	    {"[]", "not a JSON object"},
	    {"{\"emoji\":\"\U0001F44D\",\"x\":0}", "y is not"},
	    {"{\"emoji\":\"\U0001F44D\",\"x\":-0.1,\"y\":0}", "x is not"},
	    {"{\"emoji\":\"\U0001F44D\",\"x\":0,\"y\":1e400}", "not JSON"},
	    {"{\"emoji\":\"\U0001F44D\",\"x\":true,\"y\":0}", "x is not"},
	    {"{\"emoji\":1,\"x\":0,\"y\":0}", "emoji is not"},
	    {"{\"emoji\":\"\\u0000\",\"x\":0,\"y\":0}", "not JSON"},
	    {"{\"emoji\":\"\U0001F44D\",\"x\":0,\"y\":0,\"x\":0}", "not JSON"},
	    {"{\"emoji\":\"\U0001F44D\",\"x\":0,\"y\":0,\"a\\r\\nX: 1\":0}",
	     "unknown member \"a??X: 1\""},
	};
	char why[160];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		cr_assert_eq(parse(bad[i].body, why), EINVAL, "%s taken", bad[i].body);
		cr_assert(strstr(why, bad[i].why), "%s: [%s] does not say [%s]", bad[i].body, why,
		          bad[i].why);
		for (const char *p = why; *p; p++)
			cr_assert(*p >= 0x20 && *p < 0x7f, "%s: why holds byte %#x", bad[i].body,
			          (unsigned char)*p);
	}
}

Test(react, body_over_its_size)
{
	char body[400], why[160];

	memset(body, ' ', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	memcpy(body, "{\"emoji\":\"a\",\"x\":0,\"y\":0}", 25);
	cr_assert_eq(parse(body, why), EINVAL);
	cr_assert(strstr(why, "over 256"), "%s", why);
}

Test(react, urls)
{
	char why[160], big[1100];

	cr_assert_eq(react_url_ok("https://v.example/a.mp4?t=1#x", why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(react_url_ok("HTTPS://[2606:4700::1111]:8443/a.webm", why, sizeof(why)), 0,
	             "%s", why);
	cr_assert_eq(react_url_ok("http://v.example/a.mp4", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("javascript:alert(1)", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("data:video/mp4;base64,AAAA", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("https://u:p@v.example/a", why, sizeof(why)), EINVAL);
	cr_assert(strstr(why, "credentials"), "%s", why);
	cr_assert_eq(react_url_ok("https://v.example/a?b=c@d", why, sizeof(why)), 0,
	             "an @ after the host is no credential: %s", why);
	cr_assert_eq(react_url_ok("https:///a", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("https://v.example/a b", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("https://v.example/\"><script>", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("https://v.exa_mple/a", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("https://v.example/\xc3\xa9", why, sizeof(why)), EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "https://v.example/", 18);
	cr_assert_eq(react_url_ok(big, why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok("", why, sizeof(why)), EINVAL);
	cr_assert_eq(react_url_ok(NULL, why, sizeof(why)), EINVAL);
}

/*
 * The watch page makes every viewer's browser fetch the shared URL: a stranger must not point
 * it inside (this host, private networks, link-local metadata services, local names). IPv4
 * hosts are read the way a browser reads them (WHATWG: "127.1", "0x7f.1", "2130706433").
 */
Test(react, url_hosts)
{
	static const struct {
		const char *url;
		const char *why; /* NULL: accepted */
	} cases[] = {
	    {"https://v.example/a.mp4", NULL},
	    {"https://v.example:8443/a.mp4", NULL},
	    {"https://v.example./a.mp4", NULL},
	    {"https://93.184.216.34/a.mp4", NULL},
	    {"https://8.8.8.8:443/a", NULL},
	    {"https://[2606:4700::1111]/a", NULL},
	    {"https://[::ffff:8.8.8.8]/a", NULL},
	    {"https://1.2.3.4.nip.example/a", NULL},
	    {"https://v.test/a", NULL},
	    {"https:///x", "no host"},
	    {"https://:443/x", "no host"},
	    {"https://127.0.0.1/", "loopback"},
	    {"https://127.0.0.1:8443/", "loopback"},
	    {"https://127.1/", "loopback"},
	    {"https://0x7f.0.0.1/", "loopback"},
	    {"https://0177.0.0.1/", "loopback"},
	    {"https://2130706433/", "loopback"},
	    {"https://127.0.0.1./", "loopback"},
	    {"https://0.0.0.0/", "this network"},
	    {"https://0/", "this network"},
	    {"https://10.0.0.1/", "private"},
	    {"https://10.255.255.255/", "private"},
	    {"https://172.16.0.1/", "private"},
	    {"https://172.31.255.254/", "private"},
	    {"https://192.168.1.1/", "private"},
	    {"https://169.254.169.254/latest/meta-data/", "link-local"},
	    {"https://100.64.0.1/", "shared"},
	    {"https://224.0.0.1/", "multicast"},
	    {"https://255.255.255.255/", "multicast or reserved"},
	    {"https://256.0.0.1/", "not an IPv4 address"},
	    {"https://1.2.3.4.5/", "not an IPv4 address"},
	    {"https://08.0.0.1/", "not an IPv4 address"},
	    {"https://[::1]/", "loopback"},
	    {"https://[::1]:8443/x", "loopback"},
	    {"https://[::]/", "unspecified"},
	    {"https://[::ffff:127.0.0.1]/", "IPv4 address inside"},
	    {"https://[::ffff:10.0.0.1]/", "IPv4 address inside"},
	    {"https://[64:ff9b::a9fe:a9fe]/", "IPv4 address inside"},
	    {"https://[fd00::1]/", "unique local"},
	    {"https://[fe80::1]/", "link-local"},
	    {"https://[ff02::1]/", "multicast"},
	    {"https://[2001:db8::1]/", "documentation"},
	    {"https://[nope]/", "not an [IPv6]"},
	    {"https://[::1/", "not an [IPv6]"},
	    {"https://localhost/", "local name"},
	    {"https://LOCALHOST./", "local name"},
	    {"https://a.localhost/", "local name"},
	    {"https://printer.local/", "local name"},
	    {"https://db.internal/", "local name"},
	    {"https://nas.home.arpa/", "local name"},
	    {"https://mediaserver/", "single-label"},
	    {"https://v.example:99999/", "port"},
	    {"https://v.example:80a/", "port"},
	    {"https://v.example:1:2/", "host not allowed"},
	};
	char why[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int err = react_url_ok(cases[i].url, why, sizeof(why));

		if (!cases[i].why) {
			cr_expect_eq(err, 0, "%s refused: %s", cases[i].url, why);
			continue;
		}
		cr_expect_eq(err, EINVAL, "%s accepted", cases[i].url);
		cr_expect(err && strstr(why, cases[i].why), "%s: \"%s\" does not say \"%s\"",
		          cases[i].url, err ? why : "", cases[i].why);
	}
}
