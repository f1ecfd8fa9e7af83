/* Berth test guest: IDT, 8259/LAPIC/IOAPIC/PIT, the echo and timer scenarios. */
#include "guest.h"

#define COM1 0x3f8
#define LAPIC_BASE 0xfee00000u
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define IOAPIC_DEFAULT 0xfec00000u
#define PIT_HZ 1193182u

struct idt_gate {
	u16 off_lo;
	u16 sel;
	u8 zero;
	u8 type;
	u16 off_hi;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(8)));
extern char isr_stubs[];

static volatile u32 timer_ticks;
static volatile u32 echo_count;
static volatile int echo_done;

void load_idt(void *base, u16 limit)
{
	struct {
		u16 limit;
		u32 base;
	} __attribute__((packed)) d = { limit, (u32)base };
	__asm__ volatile("lidt %0" : : "m"(d));
}

void idt_init(void)
{
	for (u32 v = 0; v < 256; v++) {
		u32 off = (u32)isr_stubs + v * 16;
		idt[v].off_lo = (u16)off;
		idt[v].sel = 0x08;
		idt[v].zero = 0;
		idt[v].type = 0x8e; /* present, DPL0, 32-bit interrupt gate */
		idt[v].off_hi = (u16)(off >> 16);
	}
	load_idt(idt, sizeof(idt) - 1);
}

/* Remap the 8259 pair away from the exception vectors, then mask everything. */
void pic_disable(void)
{
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, VEC_PIC_BASE);
	outb(0xa1, VEC_PIC_BASE + 8);
	outb(0x21, 0x04);
	outb(0xa1, 0x02);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

u32 lapic_id(void) { return mmio_read32(LAPIC_BASE + LAPIC_ID) >> 24; }

void lapic_enable(void)
{
	mmio_write32(LAPIC_BASE + LAPIC_TPR, 0);
	mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

void lapic_eoi(void) { mmio_write32(LAPIC_BASE + LAPIC_EOI, 0); }

static void ioapic_write(u32 base, u32 reg, u32 v)
{
	mmio_write32(base, reg);
	mmio_write32(base + 0x10, v);
}

/*
 * Route an ISA IRQ to `vector` on `dest_apic_id`: fixed delivery, physical
 * destination, edge triggered, active high, unmasked. The IOAPIC pin comes
 * from the MP table's I/O interrupt entries, identity when not listed.
 * Returns the pin used.
 */
int ioapic_route_isa(u32 isa_irq, u8 vector, u32 dest_apic_id)
{
	u32 base = mp.nioapics ? mp.ioapic_addrs[0] : IOAPIC_DEFAULT;
	u32 pin = isa_irq;
	if (isa_irq < 16 && mp.isa_pin[isa_irq] != 0xff) {
		pin = mp.isa_pin[isa_irq];
		base = mp.ioapic_addrs[mp.isa_ioapic[isa_irq]];
	}
	ioapic_write(base, 0x10 + 2 * pin + 1, dest_apic_id << 24);
	ioapic_write(base, 0x10 + 2 * pin, vector);
	return (int)pin;
}

/* ---- PIT channel 0, mode 2 (rate generator) ---- */
static u32 pit_divisor = 65536;
static u32 pit_prev, pit_accum;

void pit_start(u32 divisor)
{
	pit_divisor = divisor;
	outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
	outb(0x40, (u8)divisor);
	outb(0x40, (u8)(divisor >> 8));
}

static u32 pit_read(void)
{
	outb(0x43, 0x00); /* latch channel 0 */
	u32 lo = inb(0x40);
	u32 hi = inb(0x40);
	return lo | (hi << 8);
}

void pit_delay_start(void)
{
	pit_prev = pit_read();
	pit_accum = 0;
}

u32 pit_elapsed(void)
{
	u32 cur = pit_read();
	if (cur <= pit_prev)
		pit_accum += pit_prev - cur;
	else
		pit_accum += pit_prev + pit_divisor - cur;
	pit_prev = cur;
	return pit_accum;
}

/* ---- interrupt dispatch ---- */
static void echo_byte(u8 c)
{
	if (echo_done)
		return;
	if (c == 0x04) {
		echo_done = 1;
		return;
	}
	putc((char)c);
	echo_count++;
}

static void uart_rx(void)
{
	while (inb(COM1 + 5) & 0x01)
		echo_byte(inb(COM1));
}

void isr_dispatch(struct isr_frame *f)
{
	u32 v = f->vector;
	if (v < 32) {
		puts("fault: vector ");
		put_u32(v);
		puts(" error ");
		put_hex(f->error);
		puts(" eip ");
		put_hex(f->eip);
		putc('\n');
		guest_exit(EXIT_FAULT);
	}
	if (v == VEC_SPURIOUS || (v >= VEC_PIC_BASE && v < VEC_PIC_BASE + 16))
		return; /* spurious: no EOI */
	if (v == VEC_TIMER)
		timer_ticks++;
	else if (v == VEC_UART)
		uart_rx();
	lapic_eoi();
}

static u32 irq_setup(void)
{
	pic_disable();
	mp_parse();
	lapic_enable();
	return lapic_id();
}

void scenario_echo(void)
{
	u32 bsp = irq_setup();
	ioapic_route_isa(4, VEC_UART, bsp);
	outb(COM1 + 2, 0x01); /* FCR: FIFO on, RX trigger level 1 byte */
	outb(COM1 + 4, 0x0b); /* MCR: DTR | RTS | OUT2 */
	outb(COM1 + 1, 0x01); /* IER: received data available */
	puts("echo: ready\n");
	for (u32 i = 0; i < uart_early_rx_len; i++)
		echo_byte(uart_early_rx[i]);
	for (;;) {
		cli();
		if (echo_done)
			break;
		sti_hlt();
	}
	outb(COM1 + 1, 0x00);
	puts("\necho: done ");
	put_u32(echo_count);
	puts(" bytes\n");
	guest_exit(0);
}

/* Sleep until the RTC seconds value differs from `from` (checked on every tick). */
static int wait_rtc_change(int from, u32 max_ticks)
{
	u32 start = timer_ticks;
	for (;;) {
		int s = rtc_read_seconds();
		if (s != from)
			return s;
		if (timer_ticks - start >= max_ticks)
			return -1;
		sti_hlt();
		cli();
	}
}

void scenario_timer(void)
{
	u32 bsp = irq_setup();
	ioapic_route_isa(0, VEC_TIMER, bsp);
	pit_start(11932);
	puts("timer: PIT at 100 Hz\n");

	u32 n = 300;
	int s = wait_rtc_change(rtc_read_seconds(), 300);
	if (s >= 0) {
		u32 start = timer_ticks;
		if (wait_rtc_change(s, 300) >= 0)
			n = timer_ticks - start;
	}
	cli();
	puts("timer: ");
	put_u32(n);
	puts(" ticks in one RTC second\n");
	if (n >= 50 && n <= 150) {
		puts("timer: ok\n");
		guest_exit(0);
	}
	puts("timer: rate out of range\n");
	guest_exit(1);
}

/* Counts in memory, ten a second (the PIT at 100 Hz through the IOAPIC), printing each
 * value; typed bytes are echoed from the UART's interrupt, and Ctrl-D ends the guest. A
 * VM saved and resumed must go on counting from where it was, not from zero. */
static volatile u32 counter;

void scenario_counter(void)
{
	u32 bsp = irq_setup();
	ioapic_route_isa(0, VEC_TIMER, bsp);
	ioapic_route_isa(4, VEC_UART, bsp);
	outb(COM1 + 2, 0x01); /* FCR: FIFO on, RX trigger level 1 byte */
	outb(COM1 + 4, 0x0b); /* MCR: DTR | RTS | OUT2 */
	outb(COM1 + 1, 0x01); /* IER: received data available */
	pit_start(11932);
	puts("counter: ready\n");
	u32 next = timer_ticks + 10;
	for (;;) {
		cli();
		if (echo_done)
			break;
		if ((int)(timer_ticks - next) >= 0) {
			next += 10;
			counter++;
			__asm__ volatile("sti" ::: "memory");
			puts("count: ");
			put_u32(counter);
			putc('\n');
			continue;
		}
		sti_hlt();
	}
	outb(COM1 + 1, 0x00);
	puts("\ncounter: done at ");
	put_u32(counter);
	putc('\n');
	guest_exit(0);
}

/* Writes N MiB of non-zero data from 16 MiB up (what a VM's used memory looks like to a
 * save), then counts as `counter` does: the saved-state benchmark's guest. */
void scenario_touch(const char *arg)
{
	u32 mib = 0;
	const char *end = parse_num(arg, &mib);
	if (!end || *end || mib == 0 || mib > 3000) {
		puts("touch: bad size ");
		puts(arg);
		putc('\n');
		guest_exit(EXIT_USAGE);
	}
	volatile u32 *p = (volatile u32 *)(16u << 20);
	for (u32 i = 0; i < (mib << 18); i++)
		p[i] = i * 2654435761u + 1;
	puts("touch: ");
	put_u32(mib);
	puts(" MiB written\n");
	scenario_counter();
}
