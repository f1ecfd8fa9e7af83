/*
 * Berth test guest: the acpi scenario. Finds the RSDP through the PVH start info,
 * checks every table's checksum, counts the CPUs in the MADT and powers the VM off
 * through the hardware-reduced FADT's sleep control register with \_S5's SLP_TYP.
 */
#include "guest.h"

static u8 checksum(const u8 *p, u32 len)
{
	u8 s = 0;
	for (u32 i = 0; i < len; i++)
		s = (u8)(s + p[i]);
	return s;
}

static u32 rd32(const u8 *p) { return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24; }

static const u8 *table_ok(u32 addr, const char *sig)
{
	const u8 *t = (const u8 *)addr;
	if (memcmp(t, sig, 4) != 0 || checksum(t, rd32(t + 4)) != 0)
		return NULL;
	return t;
}

static __attribute__((noreturn)) void fail(const char *what)
{
	puts("acpi: ");
	puts(what);
	putc('\n');
	guest_exit(1);
}

/* Finds the byte that follows "_S5_" + PackageOp in the DSDT's AML: SLP_TYPa. */
static int s5_sleep_type(const u8 *dsdt)
{
	u32 len = rd32(dsdt + 4);
	for (u32 i = 36; i + 9 < len; i++) {
		if (memcmp(dsdt + i, "_S5_", 4) == 0 && dsdt[i + 4] == 0x12) {
			const u8 *e = dsdt + i + 7; /* PkgLength (1 byte), NumElements */
			if (e[0] == 0x0a)
				return e[1];
			if (e[0] == 0x00 || e[0] == 0x01)
				return e[0];
		}
	}
	return -1;
}

void scenario_acpi(const struct hvm_start_info *si)
{
	if (!si->rsdp_paddr || (si->rsdp_paddr >> 32))
		fail("no RSDP in the start info");
	const u8 *rsdp = (const u8 *)(u32)si->rsdp_paddr;
	if (memcmp(rsdp, "RSD PTR ", 8) != 0 || checksum(rsdp, 20) != 0 || checksum(rsdp, 36) != 0)
		fail("bad RSDP");
	const u8 *xsdt = table_ok(rd32(rsdp + 24), "XSDT");
	if (!xsdt)
		fail("bad XSDT");
	const u8 *fadt = NULL, *madt = NULL;
	for (u32 off = 36; off + 8 <= rd32(xsdt + 4); off += 8) {
		u32 addr = rd32(xsdt + off);
		if (table_ok(addr, "FACP"))
			fadt = (const u8 *)addr;
		else if (table_ok(addr, "APIC"))
			madt = (const u8 *)addr;
	}
	if (!fadt || !madt)
		fail("FADT or MADT missing");
	u32 cpus = 0, ioapic = 0;
	for (u32 off = 44; off + 2 <= rd32(madt + 4); off += madt[off + 1]) {
		if (madt[off + 1] < 2)
			fail("bad MADT entry");
		if (madt[off] == 0 && (rd32(madt + off + 4) & 1))
			cpus++;
		if (madt[off] == 1)
			ioapic = rd32(madt + off + 4);
	}
	puts("acpi: MADT lists ");
	put_u32(cpus);
	puts(" cpus, IOAPIC at ");
	put_hex(ioapic);
	putc('\n');
	if (!(rd32(fadt + 112) & (1u << 20)))
		fail("FADT is not hardware-reduced");
	const u8 *dsdt = table_ok(rd32(fadt + 140), "DSDT");
	if (!dsdt)
		fail("bad DSDT");
	int slp_typ = s5_sleep_type(dsdt);
	if (slp_typ < 0)
		fail("no \\_S5 in the DSDT");
	if (fadt[244] != 1)
		fail("sleep control register is not an I/O port");
	u16 port = (u16)rd32(fadt + 248);
	puts("acpi: powering off through the sleep control register\n");
	outb(port, (u8)(((slp_typ & 7) << 2) | (1u << 5)));
	fail("still running after the power-off write");
}
