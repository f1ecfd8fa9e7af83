/* Berth test guest: the polling virtio-mmio driver core (virtio.c), shared by the
 * device scenarios. */
#ifndef BERTH_GUEST_VIRTIO_H
#define BERTH_GUEST_VIRTIO_H

#include "guest.h"

/* virtio-mmio version 2 registers and device status bits. */
#define VM_MAGIC 0x000
#define VM_VERSION 0x004
#define VM_DEVICE_ID 0x008
#define VM_DEVICE_FEATURES 0x010
#define VM_DEVICE_FEATURES_SEL 0x014
#define VM_DRIVER_FEATURES 0x020
#define VM_DRIVER_FEATURES_SEL 0x024
#define VM_QUEUE_SEL 0x030
#define VM_QUEUE_NUM_MAX 0x034
#define VM_QUEUE_NUM 0x038
#define VM_QUEUE_READY 0x044
#define VM_QUEUE_NOTIFY 0x050
#define VM_INTERRUPT_STATUS 0x060
#define VM_INTERRUPT_ACK 0x064
#define VM_STATUS 0x070
#define VM_QUEUE_DESC_LOW 0x080
#define VM_QUEUE_DESC_HIGH 0x084
#define VM_QUEUE_DRIVER_LOW 0x090
#define VM_QUEUE_DRIVER_HIGH 0x094
#define VM_QUEUE_DEVICE_LOW 0x0a0
#define VM_QUEUE_DEVICE_HIGH 0x0a4
#define VM_CONFIG 0x100

#define ST_ACKNOWLEDGE 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8
#define ST_NEEDS_RESET 0x40

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
/* Programs queue `index` with `num` entries at the given ring addresses and marks it ready;
 * -1 if the queue is in use, too small, or does not become ready. */
int vq_program(u32 base, u32 index, u32 num, u32 desc, u32 driver, u32 device);
void set_desc(struct vq *q, u32 i, u32 addr_lo, u32 addr_hi, u32 len, u16 flags, u16 next);
void vq_submit(struct vq *q, u16 head);
/* Next used element; 0 and its id/len, -1 after ~10 s. */
int vq_wait(struct vq *q, u32 *id, u32 *len);

#endif
