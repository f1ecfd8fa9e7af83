/*
 * Berth test guest: PVH entry, GDT, interrupt stubs, AP trampoline.
 * Everything runs in flat 32-bit protected mode with paging off.
 */

#define MAX_CPUS 64
#define AP_STACK_SHIFT 11          /* 2 KiB per AP stack */
#define BSP_STACK_SIZE 16384

/* ---- ELF note: XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen") ---- */
	.section .note.Xen, "a"
	.balign 4
	.long 4                         /* namesz: "Xen\0" */
	.long 4                         /* descsz */
	.long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.long _start

/* ---- PVH entry: 32-bit PM, paging off, EBX = struct hvm_start_info * ---- */
	.section .text.entry, "ax"
	.code32
	.globl _start
_start:
	cli
	cld
	movl %ebx, %esi                 /* keep start info pointer */
	lgdt gdt_desc
	ljmp $0x08, $1f
1:	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %fs
	movl %eax, %gs
	movl %eax, %ss
	/* zero .bss (stacks live after __bss_end and are not cleared) */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl
	movl $bsp_stack + BSP_STACK_SIZE, %esp
	xorl %ebp, %ebp
	pushl %esi
	call kmain
	jmp halt_loop

	.globl halt_loop
halt_loop:
	cli
	hlt
	jmp halt_loop

/* ---- AP protected-mode entry (reached from the trampoline) ---- */
	.text
	.globl ap_entry32
ap_entry32:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %fs
	movl %eax, %gs
	movl %eax, %ss
	cld
	movl $1, %eax
	lock xaddl %eax, ap_stack_next  /* eax = this AP's stack slot */
	cmpl $MAX_CPUS, %eax
	jae halt_loop
	incl %eax
	shll $AP_STACK_SHIFT, %eax
	addl $ap_stacks, %eax
	movl %eax, %esp
	xorl %ebp, %ebp
	call ap_main
	jmp halt_loop

/* ---- ioloop: n outb writes to port 0x80, minimal loop ---- */
	.globl io_loop_0x80
io_loop_0x80:
	movl 4(%esp), %ecx
	testl %ecx, %ecx
	jz 2f
	xorl %eax, %eax
1:	outb %al, $0x80
	decl %ecx
	jnz 1b
2:	ret

/* ---- interrupt stubs: 256 x 16 bytes, isr_stubs + vector * 16 ---- */
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	/* CPU pushed an error code */
	.else
	pushl $0
	.endif
	pushl $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	pushal
	movl %esp, %eax
	pushl %eax
	call isr_dispatch
	addl $4, %esp
	/*
	 * Return without iret: the KVM this guest is tested on emulates CPL0
	 * code and its emulator cannot do a protected-mode iret. The frame is
	 * always same-privilege, [eip][cs][eflags]: rewrite it to
	 * [eflags][eip] and finish with popfl; ret.
	 */
	movl 40(%esp), %eax             /* eip (pushal 32 + vector + error) */
	movl 48(%esp), %ecx             /* eflags */
	movl %ecx, 44(%esp)             /* cs slot <- eflags */
	movl %eax, 48(%esp)             /* eflags slot <- eip */
	popal
	addl $12, %esp                  /* vector, error code, old eip slot */
	popfl
	ret

/* ---- AP real-mode trampoline, copied to 0x8000 (SIPI vector 0x08) ---- */
	.section .rodata
	.balign 16
	.globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
	.code16
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl tramp_gdtr - ap_trampoline_start
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $ap_entry32
	.balign 8
tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
ap_trampoline_end:
	.code32

/* ---- GDT: null, flat code 0x08, flat data 0x10 ---- */
	.balign 8
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff
	.quad 0x00cf92000000ffff
gdt_end:
	.balign 4
	.word 0
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

/* ---- data ---- */
	.data
	.balign 4
ap_stack_next:
	.long 0

	.section .stack, "aw", @nobits
	.balign 16
bsp_stack:
	.skip BSP_STACK_SIZE
	.balign 16
ap_stacks:
	.skip (MAX_CPUS + 1) << AP_STACK_SHIFT
