/*
 * Berth test guest: virtio-blk with many requests in flight at once, and the
 * virtio-blk-depth scenario. Request slot k uses descriptors 3k..3k+2 (header,
 * data, status) and its own header and status byte, so up to DEPTH_MAX requests
 * can be offered before the first completes; completions are matched to slots by
 * the used ring's ids, in whatever order the device returns them.
 */
#include "virtio_blk.h"

void blk_offer(struct blk *d, u32 k, u32 type, u32 sector, u32 buf, u32 len)
{
	volatile u32 *hdr = d->depth_hdr + 4 * k;
	u16 head = (u16)(3 * k);
	hdr[0] = type;
	hdr[1] = 0;
	hdr[2] = sector;
	hdr[3] = 0;
	d->depth_status[k] = S_NONE;
	blk_desc(d->desc, head, (u32)hdr, 16, DESC_NEXT, (u16)(head + 1));
	blk_desc(d->desc, head + 1u, buf, len, (u16)((type == T_IN ? DESC_WRITE : 0) | DESC_NEXT), (u16)(head + 2));
	blk_desc(d->desc, head + 2u, (u32)&d->depth_status[k], 1, DESC_WRITE, 0);
	d->avail[2 + d->avail_idx % QSZ] = head;
	barrier();
	d->avail_idx++;
	d->avail[1] = d->avail_idx;
}

void blk_kick(struct blk *d)
{
	barrier();
	mmio_write32(d->base + VM_QUEUE_NOTIFY, 0);
}

u32 blk_reap(struct blk *d, u32 *status)
{
	for (u32 spins = 0; spins < 20000000u; spins++) {
		if (d->used[1] != d->used_seen) {
			barrier();
			/* virtq_used_elem {u32 id; u32 len} after the u16 flags and idx. */
			volatile u32 *elem = (volatile u32 *)(d->used + 2) + 2 * (d->used_seen % QSZ);
			u32 k = elem[0] / 3;
			d->used_seen++;
			if (k >= DEPTH_MAX)
				blk_fail("virtio-blk-depth: the device returned an unknown descriptor");
			*status = d->depth_status[k];
			return k;
		}
		cpu_relax();
	}
	blk_fail("virtio-blk-depth: no completion");
}

/*
 * virtio-blk-depth [N]: N (default and at most DEPTH_MAX) 4 KiB writes of
 * distinct patterns to scattered sectors, offered together with one notify;
 * a flush; then N reads of them, again together, each checked. Prints how many
 * completions came back out of submission order (the device may reorder).
 */
void scenario_virtio_blk_depth(const char *cmdline, const char *arg)
{
	u32 n = DEPTH_MAX;
	if (*arg >= '0' && *arg <= '9')
		parse_num(arg, &n);
	if (n == 0 || n > DEPTH_MAX)
		blk_fail("virtio-blk-depth: depth must be 1 to 32");
	blk_open(cmdline, 0);
	struct blk *d = &disks[0];
	if (d->capacity < n * 40 + 8)
		blk_fail("virtio-blk-depth: disk too small");
	u32 reordered = 0;
	for (int pass = 0; pass < 2; pass++) {
		u32 type = pass == 0 ? T_OUT : T_IN;
		u32 base = pass == 0 ? BUF_A : BUF_B;
		for (u32 k = 0; k < n; k++) {
			u32 sector = k * 40; /* 20 KiB apart: several clusters of every format */
			if (type == T_OUT)
				fill_pattern(base + k * 4096, k + 1, sector, 8);
			else
				memset((void *)(base + k * 4096), 0, 4096);
			blk_offer(d, k, type, sector, base + k * 4096, 4096);
		}
		blk_kick(d);
		for (u32 i = 0; i < n; i++) {
			u32 status;
			u32 k = blk_reap(d, &status);
			if (status != S_OK)
				blk_fail(type == T_OUT ? "virtio-blk-depth: a write failed" : "virtio-blk-depth: a read failed");
			if (k != i)
				reordered++;
		}
		if (type == T_OUT && blk_simple(d, T_FLUSH, 0, 0, 0) != S_OK)
			blk_fail("virtio-blk-depth: flush failed");
	}
	for (u32 k = 0; k < n; k++)
		if (check_pattern(BUF_B + k * 4096, k + 1, k * 40, 8) != 8)
			blk_fail("virtio-blk-depth: read back differs");
	puts("virtio-blk-depth: ");
	put_u32(n);
	puts(" writes, then ");
	put_u32(n);
	puts(" reads, offered together and verified\n");
	puts("virtio-blk-depth: completions out of submission order: ");
	put_u32(reordered);
	putc('\n');
	guest_exit(0);
}
