/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Copying packet bytes into a source's data area (2 * XCAP_MAX_SNAPLEN
 * bytes, see the sources' struct scratch) in a way the verifier accepts.
 */
#ifndef __XCAP_COPY_H
#define __XCAP_COPY_H

/*
 * Copy len bytes from src (kernel memory, or the current process's when
 * `user`, a constant) to data[off]; returns the bytes copied, 0 on failure.
 */
static __always_inline __u32 xcap_copy(__u8 *data, __u32 off, __u64 src, __u32 len,
				       const bool user)
{
	if (off >= XCAP_MAX_SNAPLEN || len == 0)
		return 0;
	if (len > XCAP_MAX_SNAPLEN)
		len = XCAP_MAX_SNAPLEN;
	/*
	 * clang checks copies of these registers and uses the originals; hide
	 * the values from it and bound them again on the registers used.
	 */
	barrier_var(off);
	off &= XCAP_MAX_SNAPLEN - 1;
	barrier_var(len);
	if (len > XCAP_MAX_SNAPLEN)
		return 0;
	/*
	 * And once more: clang may otherwise pass a copy it spilled before the
	 * check, whose bound 6.1's verifier does not know.
	 */
	barrier_var(len);
	if (user ? bpf_probe_read_user(&data[off], len, (void *)src) :
		   bpf_probe_read_kernel(&data[off], len, (void *)src))
		return 0;
	return len;
}

#endif /* __XCAP_COPY_H */
