/*
 * Berth test guest: a polling virtio-mmio (version 2) driver and the virtio-rng,
 * virtio-console and virtio-hostile scenarios. Devices are found through the
 * "virtio_mmio.device=<size>@<base>:<irq>" entries of the command line (the
 * syntax Linux uses). No interrupts: completions are found by polling the used
 * ring; the interrupt status register is checked and acknowledged.
 */
#include "guest.h"
#include "virtio.h"

/* virtio-mmio registers */

static u32 rd(u32 base, u32 reg) { return mmio_read32(base + reg); }
static void wr(u32 base, u32 reg, u32 v) { mmio_write32(base + reg, v); }

static int starts_with(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

/* Parses "0x..." or decimal; returns the position after the number. */
const char *parse_num(const char *s, u32 *out)
{
	u32 v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		for (;; s++) {
			u32 d;
			if (*s >= '0' && *s <= '9')
				d = (u32)(*s - '0');
			else if (*s >= 'a' && *s <= 'f')
				d = (u32)(*s - 'a' + 10);
			else if (*s >= 'A' && *s <= 'F')
				d = (u32)(*s - 'A' + 10);
			else
				break;
			v = v * 16 + d;
		}
	} else {
		for (; *s >= '0' && *s <= '9'; s++)
			v = v * 10 + (u32)(*s - '0');
	}
	*out = v;
	return s;
}

/*
 * Finds the nth (from 0) device with the given id among the command line's
 * entries; checks magic and version on the way. Returns its base, 0 if none.
 */
u32 virtio_find_device(const char *cmdline, u32 id, u32 nth)
{
	const char *key = "virtio_mmio.device=";
	for (const char *s = cmdline; *s; s++) {
		if (!starts_with(s, key) || (s != cmdline && s[-1] != ' '))
			continue;
		u32 size, base, irq;
		const char *p = parse_num(s + strlen(key), &size);
		if (*p != '@')
			continue;
		p = parse_num(p + 1, &base);
		if (*p != ':')
			continue;
		parse_num(p + 1, &irq);
		if (rd(base, VM_MAGIC) != 0x74726976u || rd(base, VM_VERSION) != 2)
			continue;
		if (rd(base, VM_DEVICE_ID) == id && nth-- == 0)
			return base;
	}
	return 0;
}

u32 find_device(const char *cmdline, u32 id) { return virtio_find_device(cmdline, id, 0); }

/* Reset, ACKNOWLEDGE, DRIVER, features = VIRTIO_F_VERSION_1 + `features_lo`, FEATURES_OK. */
int negotiate_features(u32 base, u32 features_lo)
{
	wr(base, VM_STATUS, 0);
	if (rd(base, VM_STATUS) != 0)
		return -1;
	wr(base, VM_STATUS, ST_ACKNOWLEDGE);
	wr(base, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);
	wr(base, VM_DEVICE_FEATURES_SEL, 1);
	if (!(rd(base, VM_DEVICE_FEATURES) & 1))
		return -1;
	wr(base, VM_DEVICE_FEATURES_SEL, 0);
	if ((rd(base, VM_DEVICE_FEATURES) & features_lo) != features_lo)
		return -1;
	wr(base, VM_DRIVER_FEATURES_SEL, 0);
	wr(base, VM_DRIVER_FEATURES, features_lo);
	wr(base, VM_DRIVER_FEATURES_SEL, 1);
	wr(base, VM_DRIVER_FEATURES, 1);
	wr(base, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
	if (!(rd(base, VM_STATUS) & ST_FEATURES_OK))
		return -1;
	return 0;
}

static int negotiate(u32 base) { return negotiate_features(base, 0); }

void driver_ok(u32 base)
{
	wr(base, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
}

/* Lays out queue `index` in fresh memory and programs it with `num` entries. */
int vq_setup(struct vq *q, u32 base, u32 index, u32 num)
{
	u32 area = RING_AREA + index * 0x10000u;
	memset((void *)area, 0, 0x1000);
	q->base = base;
	q->index = index;
	q->size = QSIZE;
	q->desc = (volatile struct vdesc *)area;
	q->avail = (volatile u16 *)(area + 0x200);
	q->used = (volatile u16 *)(area + 0x400);
	q->buf = (u8 *)(area + 0x1000);
	q->avail_idx = 0;
	q->used_seen = 0;
	return vq_program(base, index, num, area, area + 0x200, area + 0x400);
}

int vq_program(u32 base, u32 index, u32 num, u32 desc, u32 driver, u32 device)
{
	wr(base, VM_QUEUE_SEL, index);
	if (rd(base, VM_QUEUE_READY) != 0 || rd(base, VM_QUEUE_NUM_MAX) < num)
		return -1;
	wr(base, VM_QUEUE_NUM, num);
	wr(base, VM_QUEUE_DESC_LOW, desc);
	wr(base, VM_QUEUE_DESC_HIGH, 0);
	wr(base, VM_QUEUE_DRIVER_LOW, driver);
	wr(base, VM_QUEUE_DRIVER_HIGH, 0);
	wr(base, VM_QUEUE_DEVICE_LOW, device);
	wr(base, VM_QUEUE_DEVICE_HIGH, 0);
	wr(base, VM_QUEUE_READY, 1);
	return rd(base, VM_QUEUE_READY) == 1 ? 0 : -1;
}

void set_desc(struct vq *q, u32 i, u32 addr_lo, u32 addr_hi, u32 len, u16 flags, u16 next)
{
	q->desc[i].addr_lo = addr_lo;
	q->desc[i].addr_hi = addr_hi;
	q->desc[i].len = len;
	q->desc[i].flags = flags;
	q->desc[i].next = next;
}

/* Offers chain `head` and notifies the device. */
void vq_submit(struct vq *q, u16 head)
{
	q->avail[2 + q->avail_idx % q->size] = head;
	barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
	barrier();
	wr(q->base, VM_QUEUE_NOTIFY, q->index);
}

/* Waits for the next used element; returns 0 and its id/len, -1 after ~10 s. */
int vq_wait(struct vq *q, u32 *id, u32 *len)
{
	for (u32 spins = 0; spins < 4000000u; spins++) {
		if (q->used[1] != q->used_seen) {
			barrier();
			volatile u32 *elem = (volatile u32 *)(q->used + 2) + 2 * (q->used_seen % q->size);
			*id = elem[0];
			*len = elem[1];
			q->used_seen++;
			return 0;
		}
		cpu_relax();
	}
	return -1;
}

/* Acknowledges the used-buffer interrupt; returns whether it was pending. */
static int ack_used_interrupt(u32 base)
{
	u32 isr = rd(base, VM_INTERRUPT_STATUS);
	wr(base, VM_INTERRUPT_ACK, isr);
	return (isr & 1) != 0;
}

__attribute__((noreturn)) static void fail(const char *what)
{
	puts(what);
	putc('\n');
	guest_exit(1);
}

/* ---- virtio-rng ---- */

static struct vq rq;

/* One 64-byte request in slot `slot`; returns the length the device reported, or -1. */
static int rng_request(u32 slot)
{
	u32 id, len;
	u8 *b = rq.buf + slot * 0x1000;
	memset(b, 0, 64);
	set_desc(&rq, slot, (u32)b, 0, 64, DESC_WRITE, 0);
	vq_submit(&rq, (u16)slot);
	if (vq_wait(&rq, &id, &len) || id != slot)
		return -1;
	return (int)len;
}

static int rng_start(u32 base)
{
	if (negotiate(base) || vq_setup(&rq, base, 0, QSIZE))
		return -1;
	driver_ok(base);
	return (rd(base, VM_STATUS) & ST_NEEDS_RESET) ? -1 : 0;
}

void scenario_virtio_rng(const char *cmdline)
{
	u32 base = find_device(cmdline, 4);
	if (!base)
		fail("virtio-rng: no device");
	if (rng_start(base))
		fail("virtio-rng: device setup failed");
	int a = rng_request(0);
	int b = rng_request(1);
	if (a < 0 || b < 0)
		fail("virtio-rng: request failed");
	if (!ack_used_interrupt(base))
		fail("virtio-rng: no used-buffer interrupt status");
	puts("virtio-rng: got ");
	put_u32((u32)a);
	puts(" bytes, ");
	put_u32((u32)b);
	puts(" bytes, different: ");
	puts(memcmp(rq.buf, rq.buf + 0x1000, 64) ? "yes\n" : "no\n");
	guest_exit(0);
}

/* ---- virtio-hostile ---- */

enum hostile { H_LOOP, H_OUTSIDE, H_HUGE, H_READONLY, H_AVAIL_JUMP, H_BAD_SIZE, H_COUNT };
static const char *const hostile_names[H_COUNT] = {
	"descriptor loop", "address outside RAM", "huge length",
	"write into read-only buffer", "avail index far ahead", "bad queue size",
};

static int wait_needs_reset(u32 base)
{
	for (u32 i = 0; i < 200000u; i++) {
		if (rd(base, VM_STATUS) & ST_NEEDS_RESET)
			return 0;
	}
	return -1;
}

void scenario_virtio_hostile(const char *cmdline)
{
	u32 base = find_device(cmdline, 4);
	if (!base)
		fail("hostile: no virtio-rng device");
	for (int h = 0; h < H_COUNT; h++) {
		puts("hostile: ");
		puts(hostile_names[h]);
		if (h == H_BAD_SIZE) {
			/* QueueNum 100: not a power of two; refused when the queue is enabled. */
			if (negotiate(base))
				fail(" -> setup failed");
			if (vq_setup(&rq, base, 0, 100) == 0)
				fail(" -> queue accepted");
		} else {
			if (rng_start(base))
				fail(" -> setup failed");
			u32 buf = (u32)rq.buf;
			switch (h) {
			case H_LOOP:
				set_desc(&rq, 0, buf, 0, 32, DESC_WRITE | DESC_NEXT, 1);
				set_desc(&rq, 1, buf + 32, 0, 32, DESC_WRITE | DESC_NEXT, 0);
				vq_submit(&rq, 0);
				break;
			case H_OUTSIDE:
				set_desc(&rq, 0, 0xe0000000u, 0, 64, DESC_WRITE, 0);
				vq_submit(&rq, 0);
				break;
			case H_HUGE:
				set_desc(&rq, 0, buf, 0, 0xffffffffu, DESC_WRITE, 0);
				vq_submit(&rq, 0);
				break;
			case H_READONLY:
				set_desc(&rq, 0, buf, 0, 64, 0, 0);
				vq_submit(&rq, 0);
				break;
			case H_AVAIL_JUMP:
				set_desc(&rq, 0, buf, 0, 64, DESC_WRITE, 0);
				rq.avail[1] = (u16)(QSIZE + 5);
				barrier();
				wr(base, VM_QUEUE_NOTIFY, 0);
				break;
			}
		}
		if (wait_needs_reset(base))
			fail(" -> no DEVICE_NEEDS_RESET");
		/* With DRIVER_OK set the device must also send a configuration change interrupt. */
		if (h != H_BAD_SIZE && !(rd(base, VM_INTERRUPT_STATUS) & 2))
			fail(" -> needs reset, but no configuration change interrupt");
		puts(" -> needs reset, ");
		if (rng_start(base) || rng_request(0) != 64)
			fail("NOT recovered");
		puts("recovered\n");
	}
	puts("hostile: all cases handled\n");
	guest_exit(0);
}

/* ---- virtio-console ---- */

static struct vq crx, ctx;

static void rx_post(u32 slot)
{
	set_desc(&crx, slot, (u32)(crx.buf + slot * 0x1000), 0, 64, DESC_WRITE, 0);
	vq_submit(&crx, (u16)slot);
}

void scenario_virtio_console(const char *cmdline)
{
	u32 base = find_device(cmdline, 3);
	if (!base)
		fail("virtio-console: no device");
	if (negotiate(base) || vq_setup(&crx, base, 0, QSIZE) || vq_setup(&ctx, base, 1, QSIZE))
		fail("virtio-console: device setup failed");
	driver_ok(base);
	for (u32 slot = 0; slot < 4; slot++)
		rx_post(slot);
	puts("virtio-console: ready\n");
	u32 total = 0;
	for (;;) {
		u32 id, len;
		if (crx.used[1] == crx.used_seen) {
			cpu_relax();
			continue;
		}
		if (vq_wait(&crx, &id, &len) || id >= 4 || len > 64)
			fail("virtio-console: bad receive completion");
		const u8 *in = crx.buf + id * 0x1000;
		u32 n = 0;
		int done = 0;
		while (n < len) {
			if (in[n] == 0x04) {
				done = 1;
				break;
			}
			n++;
		}
		if (n) {
			u32 tid, tlen;
			memcpy(ctx.buf, in, n);
			set_desc(&ctx, 0, (u32)ctx.buf, 0, n, 0, 0);
			vq_submit(&ctx, 0);
			if (vq_wait(&ctx, &tid, &tlen))
				fail("virtio-console: transmit timed out");
			total += n;
		}
		ack_used_interrupt(base);
		if (done)
			break;
		rx_post(id);
	}
	puts("virtio-console: done ");
	put_u32(total);
	puts(" bytes\n");
	guest_exit(0);
}
