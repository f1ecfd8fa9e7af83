/* Berth test guest: Intel MP table parsing and the smp scenario. */
#include "guest.h"

#define LAPIC_BASE 0xfee00000u
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define PIT_HZ 1193182u

struct mp_info mp;

/* Shared with the APs. */
static volatile u32 cpu_slot_next;
static volatile u32 cpu_count;
static volatile u8 cpu_ids[MAX_CPUS];

static u8 checksum(const u8 *p, u32 n)
{
	u8 s = 0;
	while (n--)
		s += *p++;
	return s;
}

static const u8 *find_mp_fp(u32 base, u32 len)
{
	for (u32 a = base; a + 16 <= base + len; a += 16) {
		const u8 *p = (const u8 *)a;
		if (!memcmp(p, "_MP_", 4) && p[8] == 1 && !checksum(p, 16))
			return p;
	}
	return NULL;
}

static u32 rd32(const u8 *p) { return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24; }
static u16 rd16(const u8 *p) { return (u16)(p[0] | p[1] << 8); }

void mp_parse(void)
{
	static u8 bus_isa[256];
	u8 dest_id[16];

	if (mp.found)
		return;
	memset(&mp, 0, sizeof(mp));
	memset(mp.isa_pin, 0xff, sizeof(mp.isa_pin));

	u32 ebda = (u32)*(volatile u16 *)0x40e << 4;
	const u8 *fp = NULL;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		fp = find_mp_fp(ebda, 1024);
	if (!fp)
		fp = find_mp_fp(0x9fc00, 0x400);
	if (!fp)
		fp = find_mp_fp(0xf0000, 0x10000);
	if (!fp)
		return;

	const u8 *ct = (const u8 *)rd32(fp + 4);
	if (!ct || memcmp(ct, "PCMP", 4))
		return;
	u32 len = rd16(ct + 4), count = rd16(ct + 34);
	if (len < 44 || checksum(ct, len))
		return;
	mp.found = 1;

	const u8 *e = ct + 44, *end = ct + len;
	/* Some firmware (qboot) leaves the entry count at 0: walk by length then. */
	for (u32 i = 0; (!count || i < count) && e + 8 <= end; i++) {
		switch (e[0]) {
		case 0: /* processor */
			if ((e[3] & 1) && mp.ncpus < MAX_CPUS) {
				mp.apic_ids[mp.ncpus++] = e[1];
				if (e[3] & 2)
					mp.bsp_apic_id = e[1];
			}
			e += 20;
			break;
		case 1: /* bus */
			bus_isa[e[1]] = !memcmp(e + 2, "ISA", 3);
			e += 8;
			break;
		case 2: /* IOAPIC */
			if ((e[3] & 1) && mp.nioapics < 8) {
				mp.ioapic_ids[mp.nioapics] = e[1];
				mp.ioapic_addrs[mp.nioapics++] = rd32(e + 4);
			}
			e += 8;
			break;
		case 3: /* I/O interrupt assignment */
			if (e[1] == 0 && bus_isa[e[4]] && e[5] < 16) {
				mp.isa_pin[e[5]] = e[7];
				dest_id[e[5]] = e[6];
			}
			e += 8;
			break;
		case 4: /* local interrupt assignment */
			e += 8;
			break;
		default:
			e = end; /* unknown entry type: stop */
			break;
		}
	}

	/* Resolve destination IOAPIC ids to indices; drop unknown ones. */
	for (u32 irq = 0; irq < 16; irq++) {
		if (mp.isa_pin[irq] == 0xff)
			continue;
		u32 k;
		for (k = 0; k < mp.nioapics; k++)
			if (mp.ioapic_ids[k] == dest_id[irq] || dest_id[irq] == 0xff)
				break;
		if (k == mp.nioapics)
			mp.isa_pin[irq] = 0xff;
		else
			mp.isa_ioapic[irq] = (u8)k;
	}
}

static void record_cpu(u32 apic_id)
{
	u32 slot = __atomic_fetch_add(&cpu_slot_next, 1, __ATOMIC_SEQ_CST);
	if (slot < MAX_CPUS)
		cpu_ids[slot] = (u8)apic_id;
	__atomic_fetch_add(&cpu_count, 1, __ATOMIC_SEQ_CST);
}

/* Runs on each AP in protected mode (from ap_entry32), then it halts. */
void ap_main(void)
{
	record_cpu(lapic_id());
}

static void lapic_ipi(u32 apic_id, u32 icr_lo)
{
	mmio_write32(LAPIC_BASE + LAPIC_ICR_HI, apic_id << 24);
	mmio_write32(LAPIC_BASE + LAPIC_ICR_LO, icr_lo);
	for (u32 i = 0; i < 100000 && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LO) & 0x1000); i++)
		cpu_relax();
}

static void delay_us(u32 us)
{
	u32 ticks = us * (PIT_HZ / 1000) / 1000;
	pit_delay_start();
	while (pit_elapsed() < ticks)
		cpu_relax();
}

void scenario_smp(void)
{
	mp_parse();
	if (!mp.found) {
		puts("smp: no MP table\n");
		guest_exit(2);
	}
	u32 n = mp.ncpus;
	puts("smp: ");
	put_u32(n);
	puts(" cpus in MP table\n");

	pic_disable();
	lapic_enable();
	u32 bsp = lapic_id();
	record_cpu(bsp);

	memcpy((void *)TRAMPOLINE_ADDR, ap_trampoline_start,
	       (size_t)(ap_trampoline_end - ap_trampoline_start));
	pit_start(11932); /* 10 ms period, polled for delays; IRQ stays masked */

	for (u32 i = 0; i < n; i++) {
		u32 id = mp.apic_ids[i];
		if (id == bsp)
			continue;
		lapic_ipi(id, 0x00004500); /* INIT, level assert */
		delay_us(10000);
		lapic_ipi(id, 0x00004600 | (TRAMPOLINE_ADDR >> 12)); /* SIPI */
		delay_us(200);
		lapic_ipi(id, 0x00004600 | (TRAMPOLINE_ADDR >> 12)); /* SIPI again */
	}

	/* Wait up to ~3 s (PIT time) for every listed CPU. */
	pit_delay_start();
	while (cpu_count < n && pit_elapsed() < 3 * PIT_HZ)
		cpu_relax();

	u32 k = cpu_count;
	if (k > MAX_CPUS)
		k = MAX_CPUS;
	u8 ids[MAX_CPUS];
	for (u32 i = 0; i < k; i++) {
		u8 v = cpu_ids[i];
		u32 j = i;
		for (; j > 0 && ids[j - 1] > v; j--)
			ids[j] = ids[j - 1];
		ids[j] = v;
	}
	for (u32 i = 0; i < k; i++) {
		puts("smp: cpu with APIC ID ");
		put_u32(ids[i]);
		puts(" checked in\n");
	}
	if (cpu_count >= n) {
		puts("smp: all ");
		put_u32(n);
		puts(" cpus checked in\n");
		guest_exit(0);
	}
	puts("smp: only ");
	put_u32(cpu_count);
	puts(" of ");
	put_u32(n);
	puts(" cpus checked in\n");
	guest_exit(1);
}

/* Diagnostic: what mp_parse() understood of the MP table. */
void scenario_mpdump(void)
{
	mp_parse();
	if (!mp.found) {
		puts("mpdump: no MP table\n");
		guest_exit(2);
	}
	for (u32 i = 0; i < mp.ncpus; i++) {
		puts("mpdump: cpu apic id ");
		put_u32(mp.apic_ids[i]);
		puts(mp.apic_ids[i] == mp.bsp_apic_id ? " (bsp)\n" : "\n");
	}
	for (u32 i = 0; i < mp.nioapics; i++) {
		puts("mpdump: ioapic id ");
		put_u32(mp.ioapic_ids[i]);
		puts(" at ");
		put_hex(mp.ioapic_addrs[i]);
		putc('\n');
	}
	for (u32 irq = 0; irq < 16; irq++) {
		if (mp.isa_pin[irq] == 0xff)
			continue;
		puts("mpdump: isa irq ");
		put_u32(irq);
		puts(" -> ioapic ");
		put_u32(mp.ioapic_ids[mp.isa_ioapic[irq]]);
		puts(" pin ");
		put_u32(mp.isa_pin[irq]);
		putc('\n');
	}
	guest_exit(0);
}
