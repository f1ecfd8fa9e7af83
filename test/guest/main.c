/* Berth test guest: command line parsing and scenario dispatch. */
#include "guest.h"

#define CMDLINE_MAX 1024
#define MAX_WORDS 8

static char words_buf[CMDLINE_MAX];
static const char *words[MAX_WORDS];
static u32 nwords;

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void split_words(const char *s)
{
	u32 o = 0;
	while (*s && nwords < MAX_WORDS) {
		while (is_space(*s))
			s++;
		if (!*s)
			break;
		words[nwords++] = &words_buf[o];
		while (*s && !is_space(*s) && o < CMDLINE_MAX - 1)
			words_buf[o++] = *s++;
		words_buf[o++] = 0;
		if (o >= CMDLINE_MAX - 1)
			break;
	}
	for (u32 i = nwords; i < MAX_WORDS; i++)
		words[i] = "";
}

/* Decimal, digits only, no overflow; returns 0 on success. */
static int parse_u32(const char *s, u32 *out)
{
	u32 v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		u32 d = (u32)(*s - '0');
		if (v > (0xffffffffu - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static void scenario_hello(const char *cmdline)
{
	puts("Hello from the Berth test guest\n");
	puts("cmdline: ");
	puts(cmdline);
	putc('\n');
	guest_exit(0);
}

static void scenario_exit(const char *arg)
{
	u32 code;
	if (parse_u32(arg, &code) || code > 255) {
		puts("exit: bad code ");
		puts(arg);
		putc('\n');
		guest_exit(EXIT_USAGE);
	}
	puts("exit: ");
	put_u32(code);
	putc('\n');
	guest_exit(code);
}

static void scenario_ioloop(const char *arg)
{
	u32 n;
	if (parse_u32(arg, &n)) {
		puts("ioloop: bad count ");
		puts(arg);
		putc('\n');
		guest_exit(EXIT_USAGE);
	}
	io_loop_0x80(n);
	puts("ioloop: ");
	put_u32(n);
	putc('\n');
	guest_exit(0);
}

void kmain(const struct hvm_start_info *si);
void kmain(const struct hvm_start_info *si)
{
	const char *cmdline = "";

	uart_init();
	idt_init(); /* report unexpected exceptions instead of triple-faulting */
	if (si && si->magic == HVM_START_MAGIC && si->cmdline_paddr &&
	    (si->cmdline_paddr >> 32) == 0)
		cmdline = (const char *)(u32)si->cmdline_paddr;
	split_words(cmdline);

	const char *w = words[0], *arg = words[1];
	if (!*w || streq(w, "hello"))
		scenario_hello(cmdline);
	else if (streq(w, "exit"))
		scenario_exit(arg);
	else if (streq(w, "smp"))
		scenario_smp();
	else if (streq(w, "echo"))
		scenario_echo();
	else if (streq(w, "timer"))
		scenario_timer();
	else if (streq(w, "counter"))
		scenario_counter();
	else if (streq(w, "touch"))
		scenario_touch(arg);
	else if (streq(w, "rtc"))
		scenario_rtc();
	else if (streq(w, "reset"))
		scenario_reset(arg);
	else if (streq(w, "mpdump"))
		scenario_mpdump();
	else if (streq(w, "ioloop"))
		scenario_ioloop(arg);
	else if (streq(w, "virtio-rng"))
		scenario_virtio_rng(cmdline);
	else if (streq(w, "virtio-console"))
		scenario_virtio_console(cmdline);
	else if (streq(w, "virtio-hostile"))
		scenario_virtio_hostile(cmdline);
	else if (streq(w, "virtio-blk"))
		scenario_virtio_blk(cmdline, arg, words[2], words[3]);
	else if (streq(w, "virtio-blk-hostile"))
		scenario_virtio_blk_hostile(cmdline);
	else if (streq(w, "virtio-blk-bench"))
		scenario_virtio_blk_bench(cmdline, arg, words[2], words[3]);
	else if (streq(w, "virtio-blk-depth"))
		scenario_virtio_blk_depth(cmdline, arg);
	else if (streq(w, "virtio-net") && streq(arg, "dhcp"))
		scenario_virtio_net_dhcp(cmdline);
	else if (streq(w, "virtio-net") && streq(arg, "echo-server")) {
		u32 port;
		if (parse_u32(words[2], &port) || port == 0 || port > 65535) {
			puts("virtio-net: bad port ");
			puts(words[2]);
			putc('\n');
			guest_exit(EXIT_USAGE);
		}
		scenario_virtio_net_echo(cmdline, port);
	} else if (streq(w, "virtio-net-hostile"))
		scenario_virtio_net_hostile(cmdline);
	else if (streq(w, "acpi") && si)
		scenario_acpi(si);

	puts("unknown scenario: ");
	puts(w);
	putc('\n');
	guest_exit(EXIT_USAGE);
}
