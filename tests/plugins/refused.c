/* Fixtures for plugin refusal (tests/plugins.rs): each build of this file
 * is a library xcap must refuse before any of its code runs. The
 * constructor leaves a mark if it ever does. Built with one of:
 *   -DWRONG_MAJOR   a descriptor for ABI major 2
 *   -DSMALL_SIZE    a descriptor that claims 16 bytes
 *   -DBAD_MAGIC     a descriptor without the magic
 *   -DNO_DESCRIPTOR no descriptor at all
 * and, as the control that shows the mark works, with
 *   -DEMPTY         a valid descriptor offering nothing: opened (the mark
 *                   appears), then refused
 *   -DNULL_TABLES   a descriptor that counts two sources but gives no array:
 *                   opened, then refused without reading through NULL
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "xcap_plugin.h"

__attribute__((constructor)) static void must_never_run(void)
{
	const char *mark = getenv("XCAP_FIXTURE_MARK");

	if (mark)
		close(open(mark, O_CREAT | O_WRONLY, 0644));
}

#if defined(WRONG_MAJOR) || defined(SMALL_SIZE) || defined(BAD_MAGIC) || defined(EMPTY) || \
	defined(NULL_TABLES)
XCAP_PLUGIN_EXPORT = {
	XCAP_PLUGIN_HEAD,
#ifdef WRONG_MAJOR
	.abi_major = 2,
#endif
#ifdef SMALL_SIZE
	.size = 16,
#endif
#ifdef BAD_MAGIC
	.magic = 0x1234,
#endif
#ifdef NULL_TABLES
	.n_sources = 2,
#endif
	.name = "refused",
	.version = "0",
	.description = "must be refused",
};
#endif
