/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Example xcap plugin in plain C: sink "hexlines" writes one line per
 * packet to the -w file (or stdout for "-"):
 *
 *   TS_NS <TAB> IFNAME <TAB> DIR <TAB> ORIG_LEN <TAB> HEX <TAB> KEY=VALUE;...
 *
 * and, at the end, one "# SOURCE captured N dropped M" line per source.
 * Needs nothing but the header:
 *
 *   cc -shared -fPIC -I plugins/include -o libxcap_hexlines.so \
 *       plugins/examples/c-sink/hexlines_sink.c
 *   xcap --plugin ./libxcap_hexlines.so --sink hexlines -w out.txt ...
 *
 * Option (--plugin-opt hexlines.fail_after=N): fail after N packets, to
 * see a failing plugin stop itself while the capture goes on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xcap_plugin.h"

struct hexlines {
	FILE *out;
	int own; /* opened here: close at the end */
	unsigned long long written;
	long long fail_after; /* -1: never */
};

static int hl_open(const struct xcap_config *cfg, const struct xcap_host *host, void **state,
		   char *err, size_t errlen)
{
	struct hexlines *h = calloc(1, sizeof(*h));
	uint32_t i;

	(void)host;
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	h->fail_after = -1;
	for (i = 0; i < cfg->n_opts; i++) {
		const char *k = cfg->opts[i].key, *v = cfg->opts[i].value;
		char *end;

		if (strcmp(k, "fail_after") == 0) {
			h->fail_after = strtoll(v, &end, 10);
			if (*v == '\0' || *end != '\0' || h->fail_after < 0) {
				snprintf(err, errlen, "option fail_after=%s: not a count", v);
				free(h);
				return 1;
			}
		} else {
			snprintf(err, errlen, "unknown option '%s'", k);
			free(h);
			return 1;
		}
	}
	if (!cfg->path) {
		snprintf(err, errlen, "needs -w FILE");
		free(h);
		return 1;
	}
	if (strcmp(cfg->path, "-") == 0) {
		h->out = stdout;
	} else {
		h->out = fopen(cfg->path, "w");
		h->own = 1;
	}
	if (!h->out) {
		snprintf(err, errlen, "cannot write %s: %s", cfg->path, strerror(errno));
		free(h);
		return 1;
	}
	*state = h;
	return 0;
}

static int hl_write(void *state, const struct xcap_packet *p, char *err, size_t errlen)
{
	static const char *dirs[] = { "?", "In", "Out" };
	struct hexlines *h = state;
	uint32_t i;

	if (h->fail_after >= 0 && h->written >= (unsigned long long)h->fail_after) {
		snprintf(err, errlen, "failing after %llu packets, as asked", h->written);
		return 1;
	}
	fprintf(h->out, "%llu\t%s\t%s\t%u\t", (unsigned long long)p->ts_ns,
		p->ifname ? p->ifname : "-", dirs[p->direction <= 2 ? p->direction : 0],
		p->orig_len);
	for (i = 0; i < p->cap_len; i++)
		fprintf(h->out, "%02x", p->data[i]);
	fputc('\t', h->out);
	/* Fields of later ABI minors are read only when p->size covers them;
	 * meta is in 1.0, so any packet has it. */
	for (i = 0; i < p->n_meta; i++)
		fprintf(h->out, "%s%s=%s", i ? ";" : "", p->meta[i].key, p->meta[i].value);
	fputc('\n', h->out);
	h->written++;
	if (ferror(h->out)) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		return 1;
	}
	return 0;
}

static int hl_flush(void *state, char *err, size_t errlen)
{
	struct hexlines *h = state;

	if (fflush(h->out) != 0) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		return 1;
	}
	return 0;
}

static int hl_finish(void *state, const struct xcap_summary *s, char *err, size_t errlen)
{
	struct hexlines *h = state;
	uint32_t i;

	for (i = 0; i < s->n_sources; i++)
		fprintf(h->out, "# %s captured %llu dropped %llu\n", s->sources[i].name,
			(unsigned long long)s->sources[i].captured,
			(unsigned long long)s->sources[i].dropped);
	return hl_flush(state, err, errlen);
}

static void hl_close(void *state)
{
	struct hexlines *h = state;

	if (h->own)
		fclose(h->out);
	else
		fflush(h->out);
	free(h);
}

static const struct xcap_sink hexlines = {
	.size = sizeof(struct xcap_sink),
	.writes_file = 1,
	.name = "hexlines",
	.help = "one line per packet: time, interface, direction, length, hex, metadata (C example)",
	.open = hl_open,
	.write = hl_write,
	.flush = hl_flush,
	.finish = hl_finish,
	.close = hl_close,
};

static const struct xcap_sink *const sinks[] = { &hexlines };

XCAP_PLUGIN_EXPORT = {
	XCAP_PLUGIN_HEAD,
	.name = "hexlines",
	.version = "1.0",
	.description = "hex lines sink, written in C from xcap_plugin.h alone",
	.sinks = sinks,
	.n_sinks = 1,
};
