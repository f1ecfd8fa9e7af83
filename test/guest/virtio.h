/* Berth test guest: the polling virtio-mmio driver core (virtio.c), shared by the
 * device scenarios. */
#ifndef BERTH_GUEST_VIRTIO_H
#define BERTH_GUEST_VIRTIO_H

#include "guest.h"

#define DESC_NEXT 1
#define DESC_WRITE 2

#define QSIZE 8
#define RING_AREA 0x200000u /* each queue gets 64 KiB from here: rings, then buffers */

struct vdesc {
	u32 addr_lo, addr_hi;
	u32 len;
	u16 flags, next;
};

struct vq {
	u32 base; /* device window */
	u32 index;
	u32 size;
	volatile struct vdesc *desc;
	volatile u16 *avail; /* flags, idx, ring[size], used_event */
	volatile u16 *used;  /* flags, idx, then {u32 id, u32 len}[size] */
	u8 *buf;             /* 4 KiB per descriptor slot (QSIZE slots) */
	u16 avail_idx;
	u16 used_seen;
};

/* First device with this ID among the command line's virtio_mmio.device= entries; 0 if none. */
u32 find_device(const char *cmdline, u32 id);
/* Reset, ACKNOWLEDGE, DRIVER, VIRTIO_F_VERSION_1 + features_lo (all must be offered), FEATURES_OK. */
int negotiate_features(u32 base, u32 features_lo);
void driver_ok(u32 base);
/* Queue `index` with `num` entries, rings at RING_AREA + index * 64 KiB. */
int vq_setup(struct vq *q, u32 base, u32 index, u32 num);
void set_desc(struct vq *q, u32 i, u32 addr_lo, u32 addr_hi, u32 len, u16 flags, u16 next);
void vq_submit(struct vq *q, u16 head);
/* Next used element; 0 and its id/len, -1 after ~10 s. */
int vq_wait(struct vq *q, u32 *id, u32 *len);

#endif
