/* Berth test guest: shared declarations and tiny hardware helpers. */
#ifndef BERTH_GUEST_H
#define BERTH_GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned int size_t;

#define NULL ((void *)0)

/* Memory layout (physical; paging stays off). */
#define TRAMPOLINE_ADDR 0x8000u /* AP real-mode start code (SIPI vector 0x08) */
#define MAX_CPUS 64

/* Interrupt vectors. */
#define VEC_PIC_BASE 0x20  /* 8259 remapped here (then fully masked) */
#define VEC_TIMER 0x40     /* ISA IRQ 0 via IOAPIC */
#define VEC_UART 0x44      /* ISA IRQ 4 via IOAPIC */
#define VEC_SPURIOUS 0xff  /* local APIC spurious vector */

/* Exit codes. */
#define EXIT_USAGE 3
#define EXIT_FAULT 127

/* Port I/O. */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* MMIO. */
static inline u32 mmio_read32(u32 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u32 addr, u32 v) { *(volatile u32 *)addr = v; }

static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* Start info handed over by the PVH loader in EBX. */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr;
	u32 memmap_entries;
	u32 reserved;
};

/* lib / console (console.c) */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
void uart_init(void);
extern u8 uart_early_rx[64];
extern u32 uart_early_rx_len;
void putc(char c);
void puts(const char *s);
void put_u32(u32 v);
void put_dec2(u32 v); /* zero-padded to two digits */
void put_hex(u32 v);
__attribute__((noreturn)) void guest_exit(u32 code);
__attribute__((noreturn)) void halt_forever(void);

/* acpi.c */
__attribute__((noreturn)) void scenario_acpi(const struct hvm_start_info *si);

/* cmos.c */
u8 cmos_read(u8 idx);
void cmos_write(u8 idx, u8 v);
int rtc_read_seconds(void); /* UIP-safe, binary */
__attribute__((noreturn)) void scenario_rtc(void);
__attribute__((noreturn)) void scenario_reset(const char *arg);

/* irq.c */
struct isr_frame {
	u32 edi, esi, ebp, esp0, ebx, edx, ecx, eax; /* pusha */
	u32 vector, error;
	u32 eip, cs, eflags;
};
void isr_dispatch(struct isr_frame *f);
void idt_init(void);
void pic_disable(void);
u32 lapic_id(void);
void lapic_enable(void);
void lapic_eoi(void);
int ioapic_route_isa(u32 isa_irq, u8 vector, u32 dest_apic_id);
void pit_start(u32 divisor);
void pit_delay_start(void);
u32 pit_elapsed(void); /* 1.193182 MHz ticks since pit_delay_start, poll at least every 10 ms */
__attribute__((noreturn)) void scenario_echo(void);
__attribute__((noreturn)) void scenario_timer(void);
__attribute__((noreturn)) void scenario_counter(void);
__attribute__((noreturn)) void scenario_touch(const char *arg);

/* smp.c */
struct mp_info {
	int found;
	u32 ncpus;
	u8 apic_ids[MAX_CPUS];
	u8 bsp_apic_id;
	u32 nioapics;
	u8 ioapic_ids[8];
	u32 ioapic_addrs[8];
	/* ISA IRQ 0..15 -> (IOAPIC index, pin); pin 0xff when unlisted */
	u8 isa_ioapic[16];
	u8 isa_pin[16];
};
extern struct mp_info mp;
void mp_parse(void);
__attribute__((noreturn)) void scenario_smp(void);
__attribute__((noreturn)) void scenario_mpdump(void);
void ap_main(void);

/* virtio.c */
__attribute__((noreturn)) void scenario_virtio_rng(const char *cmdline);
__attribute__((noreturn)) void scenario_virtio_console(const char *cmdline);
__attribute__((noreturn)) void scenario_virtio_hostile(const char *cmdline);

/* virtio_net.c */
__attribute__((noreturn)) void scenario_virtio_net_dhcp(const char *cmdline);
__attribute__((noreturn)) void scenario_virtio_net_echo(const char *cmdline, u32 port);
__attribute__((noreturn)) void scenario_virtio_net_hostile(const char *cmdline);
u32 virtio_find_device(const char *cmdline, u32 id, u32 nth); /* nth device with that ID, 0 if none */
const char *parse_num(const char *s, u32 *out); /* "0x..." or decimal */

/* virtio_blk.c */
__attribute__((noreturn)) void scenario_virtio_blk(const char *cmdline, const char *mode, const char *arg, const char *arg2);
__attribute__((noreturn)) void scenario_virtio_blk_hostile(const char *cmdline);
__attribute__((noreturn)) void scenario_virtio_blk_bench(const char *cmdline, const char *arg, const char *arg2,
						       const char *arg3);
/* virtio_blk_depth.c */
__attribute__((noreturn)) void scenario_virtio_blk_depth(const char *cmdline, const char *arg);

/* entry.S */
extern char ap_trampoline_start[], ap_trampoline_end[];
extern void ap_entry32(void);
void load_idt(void *base, u16 limit);
void io_loop_0x80(u32 n);
extern char __image_start[], __image_end[];

#endif
