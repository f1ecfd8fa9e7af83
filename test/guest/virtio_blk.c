/*
 * Berth test guest: a polling virtio-blk driver (virtio-mmio version 2) and the
 * virtio-blk and virtio-blk-hostile scenarios. One request is in flight at a
 * time here (virtio_blk_depth.c keeps many); completions are found by polling
 * the used ring. Devices
 * are found like the other virtio devices (virtio.c, virtio_find_device).
 */
#include "virtio_blk.h"

struct blk disks[2];

static u32 rd(u32 base, u32 reg) { return mmio_read32(base + reg); }
static void wr(u32 base, u32 reg, u32 v) { mmio_write32(base + reg, v); }

__attribute__((noreturn)) void blk_fail(const char *what)
{
	puts(what);
	putc('\n');
	guest_exit(1);
}

/* Negotiates the wanted features the device offers and sets up queue 0. */
static int blk_init(struct blk *d, u32 base, u32 slot)
{
	u32 area = BLK_AREA + slot * 0x10000u;
	memset((void *)area, 0, 0x2000);
	d->base = base;
	d->desc = (volatile struct vdesc *)area;
	d->avail = (volatile u16 *)(area + 0x800);
	d->used = (volatile u16 *)(area + 0x1000);
	d->hdr = (volatile u32 *)(area + 0x1800);
	d->status = (volatile u8 *)(area + 0x1810);
	d->scratch = (u8 *)(area + 0x1900);
	d->itable = (volatile struct vdesc *)(area + 0x2000);
	d->depth_hdr = (volatile u32 *)(area + 0x6000);
	d->depth_status = (volatile u8 *)(area + 0x6400);
	d->avail_idx = d->used_seen = 0;

	wr(base, VM_STATUS, 0);
	if (rd(base, VM_STATUS) != 0)
		return -1;
	wr(base, VM_STATUS, ST_ACKNOWLEDGE);
	wr(base, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);
	wr(base, VM_DEVICE_FEATURES_SEL, 1);
	if (!(rd(base, VM_DEVICE_FEATURES) & 1))
		return -1;
	wr(base, VM_DEVICE_FEATURES_SEL, 0);
	d->features = rd(base, VM_DEVICE_FEATURES) & F_WANTED;
	wr(base, VM_DRIVER_FEATURES_SEL, 0);
	wr(base, VM_DRIVER_FEATURES, d->features);
	wr(base, VM_DRIVER_FEATURES_SEL, 1);
	wr(base, VM_DRIVER_FEATURES, 1);
	wr(base, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
	if (!(rd(base, VM_STATUS) & ST_FEATURES_OK))
		return -1;
	if (vq_program(base, 0, QSZ, area, area + 0x800, area + 0x1000))
		return -1;
	wr(base, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	d->capacity = rd(base, VM_CONFIG);
	return (rd(base, VM_STATUS) & ST_NEEDS_RESET) ? -1 : 0;
}

void blk_desc(volatile struct vdesc *t, u32 i, u32 addr, u32 len, u16 flags, u16 next)
{
	t[i].addr_lo = addr;
	t[i].addr_hi = 0;
	t[i].len = len;
	t[i].flags = flags;
	t[i].next = next;
}

/* Offers the chain at descriptor 0, waits for it; returns the status byte (S_NONE on timeout). */
static u32 blk_run(struct blk *d)
{
	*d->status = S_NONE;
	d->avail[2 + d->avail_idx % QSZ] = 0;
	barrier();
	d->avail_idx++;
	d->avail[1] = d->avail_idx;
	barrier();
	wr(d->base, VM_QUEUE_NOTIFY, 0);
	for (u32 spins = 0; spins < 20000000u; spins++) {
		if (d->used[1] != d->used_seen) {
			barrier();
			d->used_seen++;
			return *d->status;
		}
		cpu_relax();
	}
	return S_NONE;
}

static void set_header(struct blk *d, u32 type, u32 sector)
{
	d->hdr[0] = type;
	d->hdr[1] = 0;
	d->hdr[2] = sector;
	d->hdr[3] = 0;
}

/*
 * A read or write of len bytes at sector through buffer buf, split into nseg
 * equal data descriptors (nseg <= QSZ - 2). Returns the status byte.
 */
u32 blk_rw(struct blk *d, u32 type, u32 sector, u32 buf, u32 len, u32 nseg)
{
	u16 dflags = type == T_IN ? DESC_WRITE : 0;
	u32 per = len / nseg;
	set_header(d, type, sector);
	blk_desc(d->desc, 0, (u32)d->hdr, 16, DESC_NEXT, 1);
	for (u32 i = 0; i < nseg; i++) {
		u32 n = i + 1 == nseg ? len - per * i : per;
		blk_desc(d->desc, 1 + i, buf + per * i, n, dflags | DESC_NEXT, (u16)(2 + i));
	}
	blk_desc(d->desc, 1 + nseg, (u32)d->status, 1, DESC_WRITE, 0);
	return blk_run(d);
}

u32 blk_simple(struct blk *d, u32 type, u32 data, u32 len, u16 dflags)
{
	set_header(d, type, 0);
	blk_desc(d->desc, 0, (u32)d->hdr, 16, DESC_NEXT, 1);
	if (len) {
		blk_desc(d->desc, 1, data, len, dflags | DESC_NEXT, 2);
		blk_desc(d->desc, 2, (u32)d->status, 1, DESC_WRITE, 0);
	} else {
		blk_desc(d->desc, 1, (u32)d->status, 1, DESC_WRITE, 0);
	}
	return blk_run(d);
}

/* DISCARD / WRITE_ZEROES with up to four segments {sector, count, flags}. */
static u32 blk_segments(struct blk *d, u32 type, const u32 *segs, u32 nsegs)
{
	u32 *s = (u32 *)d->scratch;
	for (u32 i = 0; i < nsegs; i++) {
		s[4 * i] = segs[3 * i];
		s[4 * i + 1] = 0;
		s[4 * i + 2] = segs[3 * i + 1];
		s[4 * i + 3] = segs[3 * i + 2];
	}
	return blk_simple(d, type, (u32)s, 16 * nsegs, 0);
}

/* The deterministic test pattern: 32-bit little-endian word j of seed's pattern. */
u32 pattern_word(u32 seed, u32 j)
{
	u32 v = (j + 1) * 2654435761u ^ seed * 0x85ebca6bu;
	v ^= v >> 13;
	v *= 0xc2b2ae35u;
	v ^= v >> 16;
	return v;
}

void fill_pattern(u32 buf, u32 seed, u32 first_sector, u32 sectors)
{
	u32 *w = (u32 *)buf;
	for (u32 j = 0; j < sectors * 128; j++)
		w[j] = pattern_word(seed, first_sector * 128 + j);
}

/* Returns the first mismatching sector (relative), or sectors if all match. */
u32 check_pattern(u32 buf, u32 seed, u32 first_sector, u32 sectors)
{
	const u32 *w = (const u32 *)buf;
	for (u32 j = 0; j < sectors * 128; j++)
		if (w[j] != pattern_word(seed, first_sector * 128 + j))
			return j / 128;
	return sectors;
}

static int is_zero(u32 buf, u32 sectors)
{
	const u32 *w = (const u32 *)buf;
	for (u32 j = 0; j < sectors * 128; j++)
		if (w[j])
			return 0;
	return 1;
}

void blk_open(const char *cmdline, u32 n)
{
	u32 base = virtio_find_device(cmdline, 2, n);
	if (!base)
		blk_fail("virtio-blk: no device");
	if (blk_init(&disks[n], base, n))
		blk_fail("virtio-blk: device setup failed");
}

static void print_identity(struct blk *d)
{
	memset(d->scratch, 0, 21);
	if (blk_simple(d, T_GET_ID, (u32)d->scratch, 20, DESC_WRITE) != S_OK)
		blk_fail("virtio-blk: GET_ID failed");
	puts("virtio-blk: capacity ");
	put_u32(d->capacity);
	puts(" sectors, id ");
	puts((const char *)d->scratch);
	putc('\n');
}

/*
 * Writes the pattern to sectors 0..127: three 16 KiB requests with one data
 * descriptor, one with four; flushes; reads everything back in one two-segment
 * request and compares.
 */
static void write_and_verify(struct blk *d, u32 seed)
{
	if (d->capacity < PATTERN_SECTORS)
		blk_fail("virtio-blk: disk too small");
	fill_pattern(BUF_A, seed, 0, PATTERN_SECTORS);
	for (u32 i = 0; i < 4; i++) {
		u32 st = blk_rw(d, T_OUT, i * 32, BUF_A + i * 0x4000, 0x4000, i == 3 ? 4 : 1);
		if (st != S_OK)
			blk_fail("virtio-blk: write failed");
	}
	if (!(d->features & F_FLUSH) || blk_simple(d, T_FLUSH, 0, 0, 0) != S_OK)
		blk_fail("virtio-blk: flush failed");
	memset((void *)BUF_B, 0, PATTERN_SECTORS * 512);
	if (blk_rw(d, T_IN, 0, BUF_B, PATTERN_SECTORS * 512, 2) != S_OK)
		blk_fail("virtio-blk: read failed");
	if (check_pattern(BUF_B, seed, 0, PATTERN_SECTORS) != PATTERN_SECTORS)
		blk_fail("virtio-blk: read back differs");
}

static void read_and_verify(struct blk *d, u32 seed)
{
	memset((void *)BUF_B, 0, PATTERN_SECTORS * 512);
	if (blk_rw(d, T_IN, 0, BUF_B, PATTERN_SECTORS * 512, 3) != S_OK)
		blk_fail("virtio-blk: read failed");
	if (check_pattern(BUF_B, seed, 0, PATTERN_SECTORS) != PATTERN_SECTORS)
		blk_fail("virtio-blk: pattern differs");
}

static void scenario_discard(struct blk *d)
{
	if (!(d->features & F_DISCARD) || !(d->features & F_WRITE_ZEROES))
		blk_fail("virtio-blk: DISCARD or WRITE_ZEROES not offered");
	write_and_verify(d, 3);
	u32 discard[3] = {0, 32, 0};
	if (blk_segments(d, T_DISCARD, discard, 1) != S_OK)
		blk_fail("virtio-blk: discard failed");
	u32 zeroes[6] = {64, 32, 1, 96, 32, 0}; /* with and without the unmap flag */
	if (blk_segments(d, T_WRITE_ZEROES, zeroes, 2) != S_OK)
		blk_fail("virtio-blk: write zeroes failed");
	u32 unmap_discard[3] = {32, 8, 1};
	if (blk_segments(d, T_DISCARD, unmap_discard, 1) != S_UNSUPP)
		blk_fail("virtio-blk: discard with the unmap flag not refused with UNSUPP");
	memset((void *)BUF_B, 0xaa, PATTERN_SECTORS * 512);
	if (blk_rw(d, T_IN, 0, BUF_B, PATTERN_SECTORS * 512, 1) != S_OK)
		blk_fail("virtio-blk: read failed");
	if (!is_zero(BUF_B, 32) || check_pattern(BUF_B + 32 * 512, 3, 32, 32) != 32 ||
	    !is_zero(BUF_B + 64 * 512, 64))
		blk_fail("virtio-blk: discarded or zeroed sectors do not read back as expected");
	puts("virtio-blk: discard and write-zeroes read back as zeroes\n");
}

void scenario_virtio_blk(const char *cmdline, const char *mode, const char *arg, const char *arg2)
{
	(void)arg2;
	u32 seed = 0;
	parse_num(arg, &seed);
	if (!strlen(mode))
		blk_fail("virtio-blk: missing mode (write, read, ro, discard, two)");
	if (!memcmp(mode, "two", 4)) {
		blk_open(cmdline, 0);
		blk_open(cmdline, 1);
		for (u32 n = 0; n < 2; n++) {
			print_identity(&disks[n]);
			write_and_verify(&disks[n], seed + n);
		}
		for (u32 n = 0; n < 2; n++)
			read_and_verify(&disks[n], seed + n);
		puts("virtio-blk: two disks written and verified\n");
		guest_exit(0);
	}
	blk_open(cmdline, 0);
	struct blk *d = &disks[0];
	if (!memcmp(mode, "write", 6)) {
		print_identity(d);
		write_and_verify(d, seed);
		puts("virtio-blk: wrote and verified ");
		put_u32(PATTERN_SECTORS);
		puts(" sectors\n");
	} else if (!memcmp(mode, "read", 5)) {
		print_identity(d);
		read_and_verify(d, seed);
		puts("virtio-blk: verified ");
		put_u32(PATTERN_SECTORS);
		puts(" sectors\n");
	} else if (!memcmp(mode, "ro", 3)) {
		if (!(d->features & F_RO))
			blk_fail("virtio-blk: VIRTIO_BLK_F_RO not offered");
		if (blk_rw(d, T_IN, 0, BUF_B, 4096, 1) != S_OK)
			blk_fail("virtio-blk: read failed");
		memset((void *)BUF_A, 0x5a, 512);
		if (blk_rw(d, T_OUT, 0, BUF_A, 512, 1) != S_IOERR)
			blk_fail("virtio-blk: write to a read-only disk not refused with IOERR");
		puts("virtio-blk: read-only disk, write refused with IOERR\n");
	} else if (!memcmp(mode, "discard", 8)) {
		scenario_discard(d);
	} else {
		blk_fail("virtio-blk: unknown mode");
	}
	guest_exit(0);
}

/* ---- hostile requests: each must get an error status; the device keeps working ---- */

static void hostile_case(struct blk *d, const char *name, u32 st, u32 want)
{
	puts("virtio-blk-hostile: ");
	puts(name);
	if (st != want) {
		puts(" -> status ");
		put_u32(st);
		blk_fail(", expected an error");
	}
	if (rd(d->base, VM_STATUS) & ST_NEEDS_RESET)
		blk_fail(" -> DEVICE_NEEDS_RESET");
	if (blk_rw(d, T_IN, 0, BUF_B, 4096, 1) != S_OK)
		blk_fail(" -> a good read failed afterwards");
	puts(want == S_IOERR ? " -> IOERR, device ok\n" : " -> UNSUPP, device ok\n");
}

void scenario_virtio_blk_hostile(const char *cmdline)
{
	blk_open(cmdline, 0);
	struct blk *d = &disks[0];

	/* An 8-byte header (the sector is missing). */
	blk_desc(d->desc, 0, (u32)d->hdr, 8, DESC_NEXT, 1);
	blk_desc(d->desc, 1, (u32)d->status, 1, DESC_WRITE, 0);
	hostile_case(d, "short header", blk_run(d), S_IOERR);

	hostile_case(d, "sector past the end", blk_rw(d, T_IN, d->capacity - 1, BUF_B, 1024, 1), S_IOERR);

	/* Sector 2^64 - 1: the range would wrap around. */
	set_header(d, T_IN, 0xffffffffu);
	d->hdr[3] = 0xffffffffu;
	blk_desc(d->desc, 0, (u32)d->hdr, 16, DESC_NEXT, 1);
	blk_desc(d->desc, 1, BUF_B, 512, DESC_WRITE | DESC_NEXT, 2);
	blk_desc(d->desc, 2, (u32)d->status, 1, DESC_WRITE, 0);
	hostile_case(d, "sector 2^64-1", blk_run(d), S_IOERR);

	hostile_case(d, "odd length", blk_rw(d, T_IN, 0, BUF_B, 700, 1), S_IOERR);

	/* 300 data segments of 512 bytes through an indirect table (SEG_MAX is lower). */
	if (!(d->features & F_INDIRECT))
		blk_fail("virtio-blk-hostile: no VIRTIO_F_INDIRECT_DESC");
	set_header(d, T_IN, 0);
	blk_desc(d->itable, 0, (u32)d->hdr, 16, DESC_NEXT, 1);
	for (u32 i = 0; i < 300; i++)
		blk_desc(d->itable, 1 + i, BUF_B + i * 512, 512, DESC_WRITE | DESC_NEXT, (u16)(2 + i));
	blk_desc(d->itable, 301, (u32)d->status, 1, DESC_WRITE, 0);
	blk_desc(d->desc, 0, (u32)d->itable, 302 * 16, DESC_INDIRECT, 0);
	hostile_case(d, "too many segments", blk_run(d), S_IOERR);

	set_header(d, 0x55, 0);
	blk_desc(d->desc, 0, (u32)d->hdr, 16, DESC_NEXT, 1);
	blk_desc(d->desc, 1, (u32)d->status, 1, DESC_WRITE, 0);
	hostile_case(d, "unknown type", blk_run(d), S_UNSUPP);

	u32 seg[3] = {d->capacity - 4, 8, 0};
	hostile_case(d, "discard past the end", blk_segments(d, T_DISCARD, seg, 1), S_IOERR);

	puts("virtio-blk-hostile: all cases handled\n");
	guest_exit(0);
}
