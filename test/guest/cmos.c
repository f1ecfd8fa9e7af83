/* Berth test guest: CMOS RTC/NVRAM, the rtc and reset scenarios. */
#include "guest.h"

#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_CENTURY 0x32
#define RESET_FLAG_INDEX 0x50
#define RESET_FLAG_MAGIC 0xb5

u8 cmos_read(u8 idx)
{
	outb(CMOS_INDEX, idx & 0x7f);
	return inb(CMOS_DATA);
}

void cmos_write(u8 idx, u8 v)
{
	outb(CMOS_INDEX, idx & 0x7f);
	outb(CMOS_DATA, v);
}

struct rtc_raw {
	u8 sec, min, hour, day, mon, year, cent;
};

/* Wait (bounded) until no update is in progress. */
static void rtc_wait_uip_clear(void)
{
	for (u32 i = 0; i < 100000 && (cmos_read(RTC_REG_A) & 0x80); i++)
		cpu_relax();
}

static void rtc_read_raw(struct rtc_raw *r)
{
	rtc_wait_uip_clear();
	r->sec = cmos_read(0x00);
	r->min = cmos_read(0x02);
	r->hour = cmos_read(0x04);
	r->day = cmos_read(0x07);
	r->mon = cmos_read(0x08);
	r->year = cmos_read(0x09);
	r->cent = cmos_read(RTC_CENTURY);
}

/* Read twice (each after UIP clears) until two reads agree. */
static void rtc_read_stable(struct rtc_raw *r)
{
	struct rtc_raw b;
	rtc_read_raw(r);
	for (int i = 0; i < 16; i++) {
		rtc_read_raw(&b);
		if (!memcmp(r, &b, sizeof(b)))
			return;
		*r = b;
	}
}

static int str_eq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static u32 bcd(u32 v) { return (v >> 4) * 10 + (v & 0x0f); }

int rtc_read_seconds(void)
{
	u8 s, s2;
	u8 regb = cmos_read(RTC_REG_B);
	do {
		rtc_wait_uip_clear();
		s = cmos_read(0x00);
		rtc_wait_uip_clear();
		s2 = cmos_read(0x00);
	} while (s != s2);
	return (int)((regb & 0x04) ? s : bcd(s));
}

void scenario_rtc(void)
{
	struct rtc_raw r;
	rtc_read_stable(&r);
	u8 regb = cmos_read(RTC_REG_B);
	int binary = regb & 0x04;
	int h24 = regb & 0x02;
	int pm = r.hour & 0x80;
	u32 sec = r.sec, min = r.min, hour = r.hour & 0x7f;
	u32 day = r.day, mon = r.mon, year = r.year, cent = r.cent;
	if (!binary) {
		sec = bcd(sec);
		min = bcd(min);
		hour = bcd(hour);
		day = bcd(day);
		mon = bcd(mon);
		year = bcd(year);
		cent = bcd(cent);
	}
	if (!h24) {
		if (hour == 12)
			hour = 0;
		if (pm)
			hour += 12;
	}
	year += (cent ? cent : 20) * 100;
	puts("rtc: ");
	put_u32(year);
	putc('-');
	put_dec2(mon);
	putc('-');
	put_dec2(day);
	putc(' ');
	put_dec2(hour);
	putc(':');
	put_dec2(min);
	putc(':');
	put_dec2(sec);
	putc('\n');
	guest_exit(0);
}

void scenario_reset(const char *arg)
{
	int triple;
	if (!arg[0] || str_eq(arg, "i8042"))
		triple = 0;
	else if (str_eq(arg, "triple"))
		triple = 1;
	else {
		puts("reset: unknown method ");
		puts(arg);
		putc('\n');
		guest_exit(EXIT_USAGE);
	}

	if (cmos_read(RESET_FLAG_INDEX) == RESET_FLAG_MAGIC) {
		cmos_write(RESET_FLAG_INDEX, 0);
		puts("reset: second boot\n");
		guest_exit(0);
	}

	cmos_write(RESET_FLAG_INDEX, RESET_FLAG_MAGIC);
	if (triple) {
		puts("reset: first boot, resetting via triple fault\n");
		/* No usable IDT: #UD -> #GP -> #DF -> shutdown (triple fault). */
		load_idt(NULL, 0);
		__asm__ volatile("ud2");
	} else {
		puts("reset: first boot, resetting via i8042\n");
		for (u32 i = 0; i < 10000 && (inb(0x64) & 0x02); i++)
			cpu_relax();
		outb(0x64, 0xfe);
	}
	halt_forever();
}
