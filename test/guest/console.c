/* Berth test guest: COM1 output, tiny libc pieces, exit. */
#include "guest.h"

#define COM1 0x3f8
#define EXIT_PORT 0xf4

void *memset(void *d, int c, size_t n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p < *q ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* Bytes that were already waiting in RBR at boot (kept for the echo scenario). */
u8 uart_early_rx[64];
u32 uart_early_rx_len;

void uart_init(void)
{
	/*
	 * Enabling the FIFO flushes it, so first save whatever input is already
	 * queued (the host hands over one byte each time RBR is read): take
	 * bytes until RBR has stayed empty for a few dozen polls.
	 */
	for (u32 quiet = 0; quiet < 32 && uart_early_rx_len < sizeof(uart_early_rx);) {
		if (inb(COM1 + 5) & 0x01) {
			uart_early_rx[uart_early_rx_len++] = inb(COM1);
			quiet = 0;
		} else {
			quiet++;
		}
	}
	outb(COM1 + 2, 0x01); /* FCR: FIFO on, RX trigger level 1 byte */
	outb(COM1 + 1, 0x00); /* IER: no interrupts */
	outb(COM1 + 3, 0x80); /* LCR: DLAB */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 4, 0x03); /* MCR: DTR | RTS */
}

void putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		cpu_relax();
	outb(COM1, (u8)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

void put_u32(u32 v)
{
	char buf[11];
	int i = 10;
	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts(&buf[i]);
}

void put_dec2(u32 v)
{
	if (v < 10)
		putc('0');
	put_u32(v);
}

void put_hex(u32 v)
{
	static const char digits[] = "0123456789abcdef";
	puts("0x");
	for (int s = 28; s >= 0; s -= 4)
		putc(digits[(v >> s) & 0xf]);
}

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_exit(u32 code)
{
	outl(EXIT_PORT, code);
	halt_forever();
}
