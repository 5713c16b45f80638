/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * xcap plugin ABI: third-party capture sources and sinks as shared libraries.
 *
 * A plugin is a shared library that exports one object, `xcap_plugin`
 * (struct xcap_plugin below). xcap reads that object's first 16 bytes from
 * the ELF file before it opens the library, so a file that is not a plugin,
 * or is built for another ABI major, is refused before any of its code
 * (constructors included) runs.
 *
 * Versioning: XCAP_ABI_MAJOR changes only when a field moves or changes
 * meaning; xcap refuses any other major. XCAP_ABI_MINOR grows when fields
 * are added, always at the end of a struct. Every struct starts with (or
 * carries) its size as the writer compiled it, and a reader uses a field
 * only when that size covers it: an older plugin runs on a newer xcap and a
 * newer plugin on an older xcap, each seeing the fields both know.
 *
 * Memory: every pointer xcap passes is valid only during the call that
 * passes it (copy what you keep). Every pointer a plugin passes to a host
 * callback is read before the callback returns. Strings are UTF-8 and
 * NUL-terminated. A library is never unloaded while xcap runs.
 *
 * Threads: a source's run() has a thread of its own; its host callbacks
 * may be called only from that thread, during run(). A sink's functions are
 * called from one thread, one at a time.
 *
 * Errors: functions that can fail return 0 on success, and otherwise write
 * one line (without a newline) into err[errlen] and return nonzero. A
 * plugin that fails stops itself: the capture and the other sources and
 * sinks go on, every file stays valid, and xcap exits 1 at the end.
 */
#ifndef XCAP_PLUGIN_H
#define XCAP_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "XCAPPLUG" in memory, little-endian. */
#define XCAP_PLUGIN_MAGIC 0x47554c5050414358ULL
#define XCAP_ABI_MAJOR 1
#define XCAP_ABI_MINOR 0
/* The name of the one object a plugin exports. */
#define XCAP_PLUGIN_SYMBOL "xcap_plugin"

/* xcap_packet.direction */
#define XCAP_DIR_UNKNOWN 0
#define XCAP_DIR_IN 1
#define XCAP_DIR_OUT 2

/* xcap_host.log levels */
#define XCAP_LOG_ERROR 0
#define XCAP_LOG_WARN 1
#define XCAP_LOG_INFO 2
#define XCAP_LOG_DEBUG 3

/* A 32-bit field that is not known (pid, tid, queue). */
#define XCAP_UNKNOWN 0xffffffffu

/* One key/value pair of metadata or of options. */
struct xcap_kv {
	const char *key;
	const char *value;
};

/* One packet: emitted by a source, written by a sink. */
struct xcap_packet {
	uint32_t size; /* sizeof(struct xcap_packet) of the writer */
	uint16_t link_type; /* pcap LINKTYPE_*: 1 Ethernet, 101 raw IP */
	uint8_t direction; /* XCAP_DIR_* */
	uint8_t reserved0;
	uint64_t ts_ns; /* capture time, ns since the Unix epoch */
	const uint8_t *data; /* cap_len captured bytes */
	uint32_t cap_len;
	uint32_t orig_len; /* length of the whole packet (>= cap_len) */
	const char *ifname; /* interface name, or NULL */
	uint32_t ifindex; /* 0: unknown */
	uint32_t pid; /* XCAP_UNKNOWN where not known */
	uint32_t tid; /* XCAP_UNKNOWN where not known */
	uint32_t queue; /* XCAP_UNKNOWN where not known */
	const char *comm; /* task name, or NULL */
	const char *hook; /* capture point; NULL: the source's name */
	/* Further metadata, shown by every sink (pcapng comments, text, JSON).
	 * Keys must not contain '=' or ';'. For a sink, xcap also passes here
	 * what has no field above (netns, cpu, packet_id, drop_reason, ...). */
	const struct xcap_kv *meta;
	uint32_t n_meta;
	uint32_t reserved1;
};

/* What xcap offers a running plugin. */
struct xcap_host {
	uint32_t size; /* sizeof(struct xcap_host) of the host */
	uint32_t reserved0;
	void *ctx; /* pass back as the first argument */
	/* Sources only (NULL for sinks): hand one packet to xcap, which copies
	 * it before returning. Timestamps should not go backwards. Returns 0,
	 * or nonzero when the capture is stopping: return from run() then. */
	int (*emit)(void *ctx, const struct xcap_packet *pkt);
	/* Nonzero once the capture is stopping (signal, -c, another failure).
	 * A source calls it at least every 100 ms while it has nothing to emit:
	 * xcap also takes the call as "nothing older than now - 100 ms follows",
	 * which lets the other sources' packets out in time order. */
	int (*stopping)(void *ctx);
	/* Sources only: n packets were lost before they could be emitted. */
	void (*lost)(void *ctx, uint64_t n);
	/* One line for xcap's standard error, prefixed with the plugin's name. */
	void (*log)(void *ctx, int level, const char *msg);
};

/* How xcap was asked to capture, and this plugin's own options. */
struct xcap_config {
	uint32_t size; /* sizeof(struct xcap_config) of the host */
	uint32_t snaplen; /* -s: bytes to keep per packet */
	const char *path; /* sinks: the -w file ("-" is stdout); NULL: none */
	const char *const *interfaces; /* -i names */
	uint32_t n_interfaces;
	uint32_t verbose; /* -v count */
	/* --plugin-opt NAME.KEY=VALUE for this source or sink (NAME its name
	 * or its plugin's), as KEY/VALUE. Refuse keys you do not know. */
	const struct xcap_kv *opts;
	uint32_t n_opts;
	uint32_t reserved0;
};

/* A capture source. */
struct xcap_source {
	uint32_t size; /* sizeof(struct xcap_source) of the plugin */
	uint32_t reserved0;
	const char *name; /* for --source; unique among all sources */
	const char *help; /* one line for --list */
	/* Check cfg, prepare, and set *state (passed to run and close). A
	 * failure here is bad input: xcap exits 2 with err. host->emit must
	 * not be called yet. */
	int (*open)(const struct xcap_config *cfg, const struct xcap_host *host, void **state,
		    char *err, size_t errlen);
	/* Capture until done or host->stopping(); return 0 when it ended
	 * normally. */
	int (*run)(void *state, const struct xcap_host *host, char *err, size_t errlen);
	/* Release everything; called once after open succeeded. */
	void (*close)(void *state);
};

/* What every source did, for a sink's finish(). */
struct xcap_source_stats {
	const char *name;
	uint64_t captured; /* packets the source delivered */
	uint64_t dropped; /* packets lost inside the source */
};

struct xcap_summary {
	uint32_t size; /* sizeof(struct xcap_summary) of the host */
	uint32_t n_sources;
	const struct xcap_source_stats *sources;
};

/* A sink: gets every packet, in time order, after the filter. */
struct xcap_sink {
	uint32_t size; /* sizeof(struct xcap_sink) of the plugin */
	uint32_t writes_file; /* nonzero: writes the -w file (cfg->path) */
	const char *name; /* for --sink; unique among all sinks */
	const char *help;
	/* As for sources; host->emit and host->lost are NULL. */
	int (*open)(const struct xcap_config *cfg, const struct xcap_host *host, void **state,
		    char *err, size_t errlen);
	int (*write)(void *state, const struct xcap_packet *pkt, char *err, size_t errlen);
	/* Make what was written visible (no packet is ready just now). May be NULL. */
	int (*flush)(void *state, char *err, size_t errlen);
	/* The capture ended: complete the output. May be NULL. */
	int (*finish)(void *state, const struct xcap_summary *summary, char *err, size_t errlen);
	void (*close)(void *state);
};

/* The object a plugin exports as `xcap_plugin`. */
struct xcap_plugin {
	uint64_t magic; /* XCAP_PLUGIN_MAGIC */
	uint16_t abi_major; /* XCAP_ABI_MAJOR */
	uint16_t abi_minor; /* XCAP_ABI_MINOR */
	uint32_t size; /* sizeof(struct xcap_plugin) */
	const char *name; /* the plugin's name (an option prefix too) */
	const char *version;
	const char *description;
	/* Tables by pointer, so that each can grow on its own. */
	const struct xcap_source *const *sources;
	uint32_t n_sources;
	uint32_t reserved0;
	const struct xcap_sink *const *sinks;
	uint32_t n_sinks;
	uint32_t reserved1;
};

/* Fills the fixed head of struct xcap_plugin. */
#define XCAP_PLUGIN_HEAD                                                                  \
	.magic = XCAP_PLUGIN_MAGIC, .abi_major = XCAP_ABI_MAJOR, .abi_minor = XCAP_ABI_MINOR, \
	.size = sizeof(struct xcap_plugin)

/* Declares the exported descriptor: `XCAP_PLUGIN_EXPORT = { XCAP_PLUGIN_HEAD, ... };` */
#define XCAP_PLUGIN_EXPORT \
	__attribute__((visibility("default"))) const struct xcap_plugin xcap_plugin

#ifdef __cplusplus
}
#endif

#endif /* XCAP_PLUGIN_H */
