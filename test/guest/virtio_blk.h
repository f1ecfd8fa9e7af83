/*
 * Berth test guest: the polling virtio-blk driver's shared parts (virtio_blk.c,
 * virtio_blk_depth.c, virtio_blk_bench.c).
 */
#ifndef BERTH_GUEST_VIRTIO_BLK_H
#define BERTH_GUEST_VIRTIO_BLK_H

#include "guest.h"
#include "virtio.h"

#define DESC_INDIRECT 4

/* Feature bits, low word (VERSION_1 is bit 0 of the high word). */
#define F_SIZE_MAX (1u << 1)
#define F_SEG_MAX (1u << 2)
#define F_RO (1u << 5)
#define F_BLK_SIZE (1u << 6)
#define F_FLUSH (1u << 9)
#define F_DISCARD (1u << 13)
#define F_WRITE_ZEROES (1u << 14)
#define F_INDIRECT (1u << 28)
#define F_WANTED (F_SIZE_MAX | F_SEG_MAX | F_RO | F_BLK_SIZE | F_FLUSH | F_DISCARD | F_WRITE_ZEROES | F_INDIRECT)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define S_NONE 0xff /* what the status byte holds before the device answers */

/*
 * Memory: rings for two disks at 0x220000 + disk * 0x10000 (descriptors +0,
 * avail +0x800, used +0x1000, request header +0x1800, status byte +0x1810,
 * GET_ID/segment buffer +0x1900, indirect table +0x2000, up to 0x4000 bytes;
 * the headers and status bytes of requests kept in flight together, +0x6000
 * and +0x6400); data buffers at 0x400000 (A) and 0x500000 (B), 1 MiB each.
 */
#define QSZ 128
#define DEPTH_MAX 32 /* requests in flight together: 3 descriptors each */
#define BLK_AREA 0x220000u
#define BUF_A 0x400000u
#define BUF_B 0x500000u
#define PATTERN_SECTORS 128 /* 64 KiB */


struct blk {
	u32 base;
	u32 features;
	u32 capacity; /* sectors (low 32 bits) */
	volatile struct vdesc *desc;
	volatile u16 *avail;
	volatile u16 *used;
	volatile u32 *hdr; /* type, reserved, sector lo, sector hi */
	volatile u8 *status;
	u8 *scratch;
	volatile struct vdesc *itable;
	volatile u32 *depth_hdr; /* 4 words per request slot */
	volatile u8 *depth_status;
	u16 avail_idx, used_seen;
};

extern struct blk disks[2];

__attribute__((noreturn)) void blk_fail(const char *what);
void blk_open(const char *cmdline, u32 n);
void blk_desc(volatile struct vdesc *t, u32 i, u32 addr, u32 len, u16 flags, u16 next);
u32 blk_rw(struct blk *d, u32 type, u32 sector, u32 buf, u32 len, u32 nseg);
u32 blk_simple(struct blk *d, u32 type, u32 data, u32 len, u16 dflags);
u32 pattern_word(u32 seed, u32 j);
void fill_pattern(u32 buf, u32 seed, u32 first_sector, u32 sectors);
u32 check_pattern(u32 buf, u32 seed, u32 first_sector, u32 sectors);

/* virtio_blk_depth.c: many requests in flight at once, completions in any order. */
/* Offers request slot k (< DEPTH_MAX): len bytes at buf, to or from sector. */
void blk_offer(struct blk *d, u32 k, u32 type, u32 sector, u32 buf, u32 len);
void blk_kick(struct blk *d);
/* Waits for the next completion; returns its slot, with *status its status byte. */
u32 blk_reap(struct blk *d, u32 *status);


#endif
