/*
 * Berth test guest: the virtio-blk-bench scenario. 1 MiB sequential writes and
 * reads and 4 KiB random writes and reads with one request in flight, then (with
 * a depth argument) 4 KiB random writes and reads with that many in flight, each
 * timed with the TSC (calibrated against the PIT).
 */
#include "virtio_blk.h"

/* ---- throughput, timed with the TSC (calibrated against the PIT) ---- */

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

/* n / d without libgcc. */
static u64 udiv64(u64 n, u64 d)
{
	u64 q = 0, r = 0;
	for (int i = 63; i >= 0; i--) {
		r = (r << 1) | ((n >> i) & 1);
		if (r >= d) {
			r -= d;
			q |= (u64)1 << i;
		}
	}
	return q;
}

static u32 tsc_khz;

static void calibrate_tsc(void)
{
	pit_start(59659); /* 50 ms period; pit_elapsed() handles the wrap */
	pit_delay_start();
	u64 t0 = rdtsc();
	u32 ticks;
	while ((ticks = pit_elapsed()) < 119318) /* 100 ms */
		;
	u64 t1 = rdtsc();
	tsc_khz = (u32)udiv64((t1 - t0) * 1193182ull, (u64)ticks * 1000);
}

static u32 elapsed_us(u64 t0) { return (u32)udiv64((rdtsc() - t0) * 1000, tsc_khz); }

static u32 lcg_state;
static u32 lcg(void)
{
	lcg_state = lcg_state * 1664525u + 1013904223u;
	return lcg_state >> 8;
}

static void bench_line(const char *name, u32 size, u32 count, u32 us)
{
	puts("bench: ");
	puts(name);
	putc(' ');
	put_u32(size);
	puts(" x ");
	put_u32(count);
	puts(" in ");
	put_u32(us);
	puts(" us\n");
}

/*
 * ops random 4 KiB requests of one type over `blocks` blocks with `depth` in
 * flight: the first depth offered together, then one more offered as each
 * completes, in whatever order completions come.
 */
static void bench_depth(struct blk *d, const char *name, u32 type, u32 ops, u32 depth, u32 blocks)
{
	u32 buf = type == T_OUT ? BUF_A : BUF_B;
	u64 t0 = rdtsc();
	u32 offered = 0, done = 0;
	for (; offered < depth && offered < ops; offered++)
		blk_offer(d, offered, type, (lcg() % blocks) * 8, buf + offered * 4096, 4096);
	blk_kick(d);
	while (done < ops) {
		u32 status;
		u32 k = blk_reap(d, &status);
		if (status != S_OK)
			blk_fail("virtio-blk-bench: a request failed");
		done++;
		if (offered < ops) {
			blk_offer(d, k, type, (lcg() % blocks) * 8, buf + k * 4096, 4096);
			offered++;
			blk_kick(d);
		}
	}
	if (type == T_OUT && blk_simple(d, T_FLUSH, 0, 0, 0) != S_OK)
		blk_fail("virtio-blk-bench: flush failed");
	puts("bench: ");
	puts(name);
	puts("-q");
	put_u32(depth);
	puts(" 4096 x ");
	put_u32(ops);
	puts(" in ");
	put_u32(elapsed_us(t0));
	puts(" us\n");
}

/* virtio-blk-bench [MIB [OPS [DEPTH]]] */
void scenario_virtio_blk_bench(const char *cmdline, const char *arg, const char *arg2, const char *arg3)
{
	u32 mib = 32, ops = 1024, depth = 1;
	if (*arg >= '0' && *arg <= '9')
		parse_num(arg, &mib);
	if (*arg >= '0' && *arg <= '9' && *arg2 >= '0' && *arg2 <= '9')
		parse_num(arg2, &ops);
	if (*arg2 >= '0' && *arg2 <= '9' && *arg3 >= '0' && *arg3 <= '9')
		parse_num(arg3, &depth);
	if (depth == 0 || depth > DEPTH_MAX)
		blk_fail("virtio-blk-bench: depth must be 1 to 32");
	blk_open(cmdline, 0);
	struct blk *d = &disks[0];
	u32 span = mib * 2048; /* sectors the test covers */
	if (!mib || d->capacity < span)
		blk_fail("virtio-blk-bench: disk smaller than the test range");
	calibrate_tsc();
	puts("bench: tsc ");
	put_u32(tsc_khz);
	puts(" kHz\n");
	memset((void *)BUF_A, 0x3c, 0x100000);

	u64 t0 = rdtsc();
	for (u32 i = 0; i < mib; i++)
		if (blk_rw(d, T_OUT, i * 2048, BUF_A, 0x100000, 1) != S_OK)
			blk_fail("virtio-blk-bench: write failed");
	if (blk_simple(d, T_FLUSH, 0, 0, 0) != S_OK)
		blk_fail("virtio-blk-bench: flush failed");
	bench_line("seq-write", 0x100000, mib, elapsed_us(t0));

	t0 = rdtsc();
	for (u32 i = 0; i < mib; i++)
		if (blk_rw(d, T_IN, i * 2048, BUF_B, 0x100000, 1) != S_OK)
			blk_fail("virtio-blk-bench: read failed");
	bench_line("seq-read", 0x100000, mib, elapsed_us(t0));

	u32 blocks = span / 8;
	lcg_state = 12345;
	t0 = rdtsc();
	for (u32 i = 0; i < ops; i++)
		if (blk_rw(d, T_OUT, (lcg() % blocks) * 8, BUF_A, 4096, 1) != S_OK)
			blk_fail("virtio-blk-bench: write failed");
	if (blk_simple(d, T_FLUSH, 0, 0, 0) != S_OK)
		blk_fail("virtio-blk-bench: flush failed");
	bench_line("rand-write", 4096, ops, elapsed_us(t0));

	lcg_state = 67890;
	t0 = rdtsc();
	for (u32 i = 0; i < ops; i++)
		if (blk_rw(d, T_IN, (lcg() % blocks) * 8, BUF_B, 4096, 1) != S_OK)
			blk_fail("virtio-blk-bench: read failed");
	bench_line("rand-read", 4096, ops, elapsed_us(t0));
	if (depth > 1) {
		lcg_state = 24680;
		bench_depth(d, "rand-write", T_OUT, ops, depth, blocks);
		lcg_state = 13579;
		bench_depth(d, "rand-read", T_IN, ops, depth, blocks);
	}
	puts("bench: done\n");
	guest_exit(0);
}
